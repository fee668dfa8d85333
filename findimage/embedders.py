"""Vectorize text and images into CLIP's shared 512-dim space (float32, L2-normalised)."""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from .records import DIMS

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model that cannot be loaded or run, with what to do about it."""


class TextEmbedder(Protocol):
    model_id: str

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class ImageEmbedder(Protocol):
    model_id: str

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def model_fingerprint(name_or_path: str) -> str:
    """A hub id as given; a local directory as `name@hash` so replaced weights count as a model change."""
    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and (file.suffix in (".json", ".safetensors", ".bin") or file.name == "vocab.txt"):
            digest.update(file.relative_to(path).as_posix().encode())
            with open(file, "rb") as f:
                digest.update(f.read(1 << 20))  # the first MiB tells weights apart cheaply
            digest.update(str(file.stat().st_size).encode())
    return f"{path.resolve().name}@{digest.hexdigest()[:12]}"


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """One sentence-transformers model, loaded once per process on first use, usable from many threads."""

    def __init__(self, name_or_path: str, quantize: str = "off"):
        self.name_or_path = name_or_path
        self.quantize = quantize
        self.model_id = model_fingerprint(name_or_path)
        self._model = None
        self._load_lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when used from two threads at once; on a
        # 2-core CPU serialising inference costs nothing, as torch already uses both cores.
        self._run_lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def load(self) -> None:
        """Load now (e.g. at bot start) so the first user does not wait."""
        _ = self.model

    def _load(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in logs
        try:
            model = SentenceTransformer(self.name_or_path, device="cpu")
        except Exception as exc:  # hub unreachable, missing files, wrong layout
            raise ModelError(
                f"Could not load the model {self.name_or_path!r}: {exc}. "
                "Point FINDIMAGE_IMAGE_MODEL / FINDIMAGE_TEXT_MODEL at a hub id you can reach or a local directory."
            ) from exc
        model.eval()
        if self.quantize == "int8":
            model = _quantize_int8(model)
        log.info("loaded model %s", self.model_id)
        return model

    def _encode(self, inputs: list) -> np.ndarray:
        model = self.model
        try:
            with self._run_lock:
                vectors = model.encode(inputs, batch_size=max(1, len(inputs)), convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        vectors = normalise_rows(vectors)
        if vectors.shape[1] != DIMS:
            raise ModelError(f"The model {self.model_id} returns {vectors.shape[1]} dims; findimage needs {DIMS}.")
        return vectors

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._encode(list(images))


def _quantize_int8(model):
    """Dynamic int8 quantization of the linear layers: ~3x faster CLIP on CPU at a small fidelity cost."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


_shared: dict[tuple[str, str], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(name_or_path: str, quantize: str = "off") -> SentenceTransformerEmbedder:
    """The process-wide embedder for a model, so each model is loaded once per process."""
    with _shared_lock:
        key = (name_or_path, quantize)
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(name_or_path, quantize)
        return _shared[key]


def image_embedder(settings) -> SentenceTransformerEmbedder:
    return shared_embedder(settings.image_model, settings.quantize)


def text_embedder(settings) -> TextEmbedder:
    if settings.text_embedder == "elasticsearch":
        from .es_infer import InferTextEmbedder

        return InferTextEmbedder.from_settings(settings)
    return shared_embedder(settings.text_model)

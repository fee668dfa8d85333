"""Vectorize text and images into CLIP's shared 512-dim space (float32, L2-normalised) with a
sentence-transformers model, on torch.

What a model computes lives here; how the process runs it (threads, allocator, int8 and its fidelity
check) in findimage.models.runtime; which embedder a model setting asks for in findimage.models.factory.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from findimage.errors import ModelError
from findimage.models.base import check_vector_size, normalise_rows
from findimage.models.runtime import (
    PROBE_SENTENCES,
    Fidelity,
    keep_freed_memory_for_reuse,
    probe_images,
    quantized_if_faithful,
    use_fast_activations,
    use_torch_threads,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


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


MIN_PER_STREAM = 4  # images per inference stream below which a batch runs as one


class SentenceTransformerEmbedder:
    """One sentence-transformers model, loaded once per process on first use, usable from many threads
    (an ImageEmbedder and a TextEmbedder of findimage.models.base).

    `quantize="int8"` runs the linear layers in int8 (images ~2.5x, text queries ~4x faster on CPU).
    At load the quantized model is checked against the exact one on built-in probes (pictures for an
    image model, sentences for a text model); below `min_cosine` it is refused with a warning and the
    exact model is used instead.
    """

    def __init__(self, name_or_path: str, quantize: str = "off", min_cosine: float = 0.99, threads: int = 0):
        self.name_or_path = name_or_path
        self.quantize = quantize
        self.min_cosine = min_cosine
        self.threads = threads
        self.model_id = model_fingerprint(name_or_path)
        self.fidelity: Fidelity | None = None  # set when a quantized model was checked at load
        self.quantized = False  # whether the loaded model runs quantized
        self._model: SentenceTransformer | None = None
        self._input_size: tuple[int, int] | None = None  # (shortest edge, resample) of the image processor
        self._load_lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when used from two threads at once; on a
        # 2-core CPU serialising inference costs nothing, as torch already uses both cores.
        self._run_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # inference streams for big image batches, made on first use
        self._threads_at_load = 1
        self._vector_size: int | None = None

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def load(self) -> None:
        """Load now (e.g. at bot start) so the first user does not wait."""
        _ = self.model

    def _load(self) -> SentenceTransformer:
        use_torch_threads(self.threads)
        keep_freed_memory_for_reuse()
        import torch

        self._threads_at_load = torch.get_num_threads()
        model = self._open()
        self._input_size = _processor_input_size(model)
        if self.quantize == "int8":
            model = self._quantized(model)
        log.info("loaded model %s%s", self.model_id, " (int8)" if self.quantized else "")
        return model

    def _open(self) -> SentenceTransformer:
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
        use_fast_activations(model)
        return model

    def _quantized(self, model: SentenceTransformer) -> SentenceTransformer:
        """The int8 model if it passes the fidelity check against the exact model, else the exact model.

        The probes are pictures for an image model (one with an image processor), sentences otherwise."""
        probes = probe_images() if self._input_size else list(PROBE_SENTENCES)
        with self._run_lock:
            chosen, self.fidelity = quantized_if_faithful(model, lambda m: self._run(m, probes), self._open,
                                                          self.min_cosine, self.model_id)
        self.quantized = chosen is not None
        return chosen if chosen is not None else self._open()

    @staticmethod
    def _run(model: SentenceTransformer, inputs: list[str] | list[Image.Image]) -> np.ndarray:
        return normalise_rows(model.encode(inputs, batch_size=max(1, len(inputs)), convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False))

    def vector_size(self) -> int:
        """sentence-transformers knows no size for every CLIP module: its vector for a blank picture says it."""
        if self._vector_size is None:
            self._vector_size = int(self.embed_images([Image.new("RGB", (32, 32))]).shape[1])
        return self._vector_size

    def image_input_side(self) -> int | None:
        """The shortest side the model's image processor resizes to (224 for CLIP ViT-B/32), if any."""
        _ = self.model
        return self._input_size[0] if self._input_size else None

    def shrink(self, image: Image.Image) -> Image.Image:
        """The image downscaled exactly as the model's processor would (same size, same filter).

        Thread-safe and cheap; the indexer runs it in its decode threads so the inference thread
        gets small pictures. Embeddings do not change: the processor's own resize becomes a no-op.
        """
        _ = self.model
        if self._input_size is None:
            return image
        shortest, resample = self._input_size
        w, h = image.size
        if min(w, h) <= shortest:
            return image
        # transformers' get_resize_output_image_size(default_to_square=False), to the pixel
        long = int(shortest * max(w, h) / min(w, h))
        size = (long, shortest) if w > h else (shortest, long)
        return image.resize(size, resample)

    def _encode(self, inputs: list[str] | list[Image.Image]) -> np.ndarray:
        model = self.model
        try:
            with self._run_lock:
                vectors = self._run(model, inputs)
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return self._checked(vectors)

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        check_vector_size(self.model_id, vectors.shape[1])
        return vectors

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors of `images`. A batch big enough is split into one part per core, each run on its own
        thread with one torch thread: no per-operation barriers between cores, so the indexer's decode
        threads and other processes slow it down only by the CPU they take (measured: +10% images/s
        over torch's own threading on an idle 2-core machine, steadier when it is busy)."""
        images = list(images)
        streams = self._streams
        if streams <= 1 or len(images) < MIN_PER_STREAM * streams:
            return self._encode(images)
        model = self.model
        bounds = np.linspace(0, len(images), streams + 1).astype(int)
        try:
            parts = list(self._stream_pool().map(lambda b: self._run(model, images[b[0]:b[1]]),
                                                  zip(bounds[:-1], bounds[1:], strict=True)))
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return self._checked(np.vstack(parts))

    @property
    def _streams(self) -> int:
        """Parallel inference streams for batches: the torch thread count (FINDIMAGE_TORCH_THREADS or one
        per core); images only, as tokenizers must not be shared between threads."""
        _ = self.model
        return self._threads_at_load if self._input_size else 1

    def _stream_pool(self) -> ThreadPoolExecutor:
        with self._load_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self._streams, thread_name_prefix="inference",
                                                initializer=use_torch_threads, initargs=(1,))
        return self._pool


def _processor_input_size(model: SentenceTransformer) -> tuple[int, int] | None:
    """(shortest edge, PIL filter) the model's image processor resizes to, or None (text models, others)."""
    try:
        processor = getattr(model[0], "processor", None)
        images = getattr(processor, "image_processor", None)
        if images is None or not getattr(images, "do_resize", False):
            return None
        size = images.size
        shortest = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
        if not shortest or getattr(images, "default_to_square", True) is not False:
            return None
        return int(shortest), int(images.resample)
    except (TypeError, AttributeError, IndexError, KeyError, ValueError):
        return None


_shared: dict[tuple[str, str, float, int], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(name_or_path: str, quantize: str = "off", min_cosine: float = 0.99,
                    threads: int = 0) -> SentenceTransformerEmbedder:
    """The process-wide embedder for a model, so each model is loaded once per process."""
    with _shared_lock:
        key = (name_or_path, quantize, min_cosine, threads)
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(name_or_path, quantize, min_cosine, threads)
        return _shared[key]

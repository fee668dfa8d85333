"""What a model in immich's layout computes, on ONNX Runtime: the vectors immich computes for it.

Images: RGB, resized as `visual/preprocess_cfg.json` says (`shortest`: the shortest side to `size`, then the
centre `size` x `size` crop; `squash`: straight to `size` x `size`; with its `interpolation`), scaled to
0..1, minus `mean`, over `std`. Texts: whitespace collapsed (and, where `config.json`'s text_cfg asks for
`canonicalize`, punctuation dropped and lower-cased), then the model's `textual/tokenizer.json`, padded with
`tokenizer_config.json`'s pad token and truncated to text_cfg's `context_length`, fed as `text` (int32), or
as `input_ids` + `attention_mask` where the graph takes those (M-CLIP). immich's graphs take one input per
run (exported with a batch of 1): a batch of images is spread over threads, each running one image at a time.

Neither torch nor transformers is imported here: ONNX Runtime, `tokenizers` and Pillow compute everything.
The embedders implement findimage.models.base's protocols; findimage.models.factory chooses them.
"""
from __future__ import annotations

import logging
import string
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from findimage.errors import ModelError
from findimage.models.base import check_vector_size, normalise_rows
from findimage.models.layout import LayoutModel, ModelFiles, Side, model_files
from findimage.models.onnx_runtime import cores, open_session, quantized_if_faithful
from findimage.models.runtime import PROBE_SENTENCES, Fidelity, RuntimeOptions, probe_images

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

RESAMPLING = {method.name.lower(): method for method in Image.Resampling}
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Preprocess:
    """`visual/preprocess_cfg.json`: how a picture becomes the graph's input."""

    size: int
    mean: np.ndarray
    std: np.ndarray
    resample: Image.Resampling
    resize_mode: str  # "shortest" (resize the shortest side, centre crop) or "squash"

    @classmethod
    def of(cls, config: dict[str, Any], model_id: str) -> Preprocess:
        try:
            size = config["size"]
            resample = RESAMPLING[str(config["interpolation"]).lower()]
            mean, std = (np.array(config[key], dtype=np.float32) for key in ("mean", "std"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"The model {model_id} has a preprocess_cfg.json without a usable {exc} "
                             "(size, interpolation, mean and std are needed).") from exc
        mode = config.get("resize_mode", "shortest")  # open_clip's default where older configs have none
        if mode not in ("shortest", "squash"):
            raise ModelError(f"The model {model_id} resizes images by {mode!r}, which findimage does not know "
                             "(shortest or squash).")
        return cls(int(size[0] if isinstance(size, list) else size), mean, std, resample, mode)

    def resized(self, image: Image.Image) -> Image.Image:
        """immich's resize: the shortest side to `size` (the other in proportion, truncated), or squashed."""
        if self.resize_mode == "squash":
            return image.resize((self.size, self.size), resample=self.resample)
        width, height = image.size
        if width < height:
            return image.resize((self.size, int(height / width * self.size)), resample=self.resample)
        return image.resize((int(width / height * self.size), self.size), resample=self.resample)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The graph's input for one picture: [3, size, size], float32."""
        image = self.resized(image if image.mode == "RGB" else image.convert("RGB"))
        if self.resize_mode == "shortest":  # the centre square, as immich crops it
            left, top = int(image.width / 2 - self.size / 2), int(image.height / 2 - self.size / 2)
            image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        return ((array - self.mean) / self.std).transpose(2, 0, 1)

    def shrink(self, image: Image.Image) -> Image.Image:
        """`image` resized now where that makes it smaller, such that `pixels` computes exactly what it would
        have from `image`: it resizes a picture of the target size by copying it."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        small = self.resized(rgb)
        if small.width * small.height >= image.width * image.height or self.resized(small).size != small.size:
            return image
        return small


class VisualEncoder:
    """`visual/model.onnx` with its preprocessing. One session serves every thread: a batch runs as parallel
    streams, each one image at a time on one thread, with no per-operation barriers between cores."""

    def __init__(self, files: ModelFiles, options: RuntimeOptions):
        self.model_id = files.model_id
        self.dims = files.dims
        self.preprocess = Preprocess.of(files.read_json("preprocess_cfg.json"), files.model_id)
        self.streams = max(1, options.threads or cores())
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        path = files.folder / "model.onnx"
        self.session = open_session(path, 1, options)
        graph = self.session.get_inputs()[0]
        self._input = graph.name
        side = graph.shape[-1] if len(graph.shape) == 4 else None
        if isinstance(side, int) and side != self.preprocess.size:
            raise ModelError(f"The model {self.model_id} takes {side} px images, but its preprocess_cfg.json "
                             f"resizes them to {self.preprocess.size}.")
        self.fidelity: Fidelity | None = None
        self.quantized = False
        if options.quantize == "int8":
            probes = probe_images()
            exact = self.session
            self.session, self.fidelity = quantized_if_faithful(
                path, exact, lambda session: np.vstack([self._one(session, p) for p in probes]), 1, options,
                self.model_id)
            self.quantized = self.session is not exact

    def _one(self, session: onnxruntime.InferenceSession, image: Image.Image) -> np.ndarray:
        vector = session.run(None, {self._input: self.preprocess.pixels(image)[None]})[0]
        return normalise_rows(np.asarray(vector).reshape(1, -1))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised row per image."""
        images = list(images)
        if not images:
            return np.empty((0, self.dims), np.float32)
        session = self.session
        if self.streams == 1 or len(images) == 1:
            rows = [self._one(session, image) for image in images]
        else:
            rows = list(self._stream_pool().map(lambda image: self._one(session, image), images))
        vectors = np.vstack(rows)
        if vectors.shape[1] != self.dims:
            raise ModelError(f"The model {self.model_id} returns {vectors.shape[1]} dims, but its config.json "
                             f"says {self.dims} (embed_dim).")
        return vectors

    def _stream_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="inference")
            return self._pool


class TextualEncoder:
    """`textual/model.onnx` with the model's tokenizer. Texts run one at a time (a query is one text)."""

    def __init__(self, files: ModelFiles, options: RuntimeOptions):
        self.model_id = files.model_id
        self.dims = files.dims
        self.context_length = int(files.text_config.get("context_length", 77))
        kwargs = files.text_config.get("tokenizer_kwargs")
        self.canonicalize = isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize"
        self.tokenizer = self._tokenizer(files)
        self._lock = threading.Lock()  # one text at a time through the tokenizer and the session
        path = files.folder / "model.onnx"
        self.session = open_session(path, options.threads, options)
        self._inputs = {graph.name: np.int64 if graph.type == "tensor(int64)" else np.int32
                        for graph in self.session.get_inputs()}
        self.masked = {"input_ids", "attention_mask"} <= set(self._inputs)  # M-CLIP's graph
        if not self.masked and len(self._inputs) != 1:
            raise ModelError(f"The model {self.model_id} takes {', '.join(self._inputs)}: findimage feeds a text "
                             "graph `text`, or `input_ids` and `attention_mask`.")
        self.fidelity: Fidelity | None = None
        self.quantized = False
        if options.quantize == "int8":
            exact = self.session
            self.session, self.fidelity = quantized_if_faithful(
                path, exact, lambda session: np.vstack([self._one(session, t) for t in PROBE_SENTENCES]),
                options.threads, options, self.model_id)
            self.quantized = self.session is not exact

    def _tokenizer(self, files: ModelFiles) -> Tokenizer:
        from tokenizers import Tokenizer

        pad = files.read_json("tokenizer_config.json").get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        try:
            tokenizer = Tokenizer.from_file(str(files.folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own Exception subclass for a file it cannot read
            raise ModelError(f"The model {self.model_id} has an unreadable tokenizer.json ({exc}).") from exc
        pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        if pad_id is None:
            raise ModelError(f"The model {self.model_id} pads with {pad!r} (tokenizer_config.json's pad_token), "
                             "which its tokenizer.json does not have.")
        tokenizer.enable_padding(length=self.context_length, pad_token=pad, pad_id=pad_id)
        tokenizer.enable_truncation(max_length=self.context_length)
        return tokenizer

    def tokens(self, text: str) -> dict[str, np.ndarray]:
        """The graph's inputs for one text, as immich tokenizes it."""
        text = " ".join(text.split())
        if self.canonicalize:
            text = text.translate(_PUNCTUATION).lower()
        encoding = self.tokenizer.encode(text)
        if self.masked:
            return {"input_ids": np.array([encoding.ids], dtype=self._inputs["input_ids"]),
                    "attention_mask": np.array([encoding.attention_mask], dtype=self._inputs["attention_mask"])}
        ((name, dtype),) = self._inputs.items()
        return {name: np.array([encoding.ids], dtype=dtype)}

    def _one(self, session: onnxruntime.InferenceSession, text: str) -> np.ndarray:
        vector = session.run(None, self.tokens(text))[0]
        return normalise_rows(np.asarray(vector).reshape(1, -1))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        with self._lock:
            rows = [self._one(self.session, text) for text in texts]
        if not rows:
            return np.empty((0, self.dims), np.float32)
        vectors = np.vstack(rows)
        if vectors.shape[1] != self.dims:
            raise ModelError(f"The model {self.model_id} returns {vectors.shape[1]} dims, but its config.json "
                             f"says {self.dims} (embed_dim).")
        return vectors


class _OnnxEmbedder:
    """One side of an immich-layout model, loaded once per process on first use, usable from many threads."""

    side: Side
    setting_name: str

    def __init__(self, model: LayoutModel, options: RuntimeOptions):
        self.model = model
        self.options = options
        self._fingerprint = model.fingerprint()
        self._encoder: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The model as the index records it: the loaded files' id (the hub's commit resolved), else what is
        known without loading."""
        return self._encoder.model_id if self._encoder is not None else self._fingerprint

    def load(self) -> None:
        """Load now (e.g. at bot start) so the first user does not wait."""
        _ = self.encoder

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    files = model_files(self.model, self.side, self.setting_name)
                    check_vector_size(files.model_id, files.dims)
                    encoder = (VisualEncoder if self.side == "visual" else TextualEncoder)(files, self.options)
                    log.info("loaded model %s (%s, ONNX Runtime%s)", files.model_id, self.side,
                             ", int8" if encoder.quantized else "")
                    self._encoder = encoder
        return self._encoder

    @property
    def quantized(self) -> bool:
        return bool(self.encoder.quantized)

    @property
    def fidelity(self) -> Fidelity | None:
        fidelity: Fidelity | None = self.encoder.fidelity
        return fidelity


class OnnxImageEmbedder(_OnnxEmbedder):
    """An ImageEmbedder: `visual/` of an immich-layout model."""

    side: Side = "visual"
    setting_name = "FINDIMAGE_IMAGE_MODEL"

    def vector_size(self) -> int:
        return int(self.encoder.dims)  # config.json's embed_dim, checked against every vector the model gives

    def image_input_side(self) -> int | None:
        return int(self.encoder.preprocess.size)

    def shrink(self, image: Image.Image) -> Image.Image:
        """The image resized now as the model would resize it (in the indexer's decode threads), where that
        makes it smaller; the vector does not change."""
        shrunk: Image.Image = self.encoder.preprocess.shrink(image)
        return shrunk

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        try:
            vectors: np.ndarray = self.encoder.embed(images)
        except ModelError:
            raise
        except Exception as exc:  # onnxruntime's failures share no base class
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return vectors


class OnnxTextEmbedder(_OnnxEmbedder):
    """A TextEmbedder: `textual/` of an immich-layout model."""

    side: Side = "textual"
    setting_name = "FINDIMAGE_TEXT_MODEL"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        try:
            vectors: np.ndarray = self.encoder.embed(texts)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return vectors


_shared: dict[tuple[Side, str, RuntimeOptions], _OnnxEmbedder] = {}
_shared_lock = threading.Lock()


def shared_image_embedder(model: LayoutModel, options: RuntimeOptions) -> OnnxImageEmbedder:
    """The process-wide image side of a model, so each is loaded once per process."""
    embedder = _shared_embedder("visual", model, options)
    assert isinstance(embedder, OnnxImageEmbedder)
    return embedder


def shared_text_embedder(model: LayoutModel, options: RuntimeOptions) -> OnnxTextEmbedder:
    """The process-wide text side of a model, so each is loaded once per process."""
    embedder = _shared_embedder("textual", model, options)
    assert isinstance(embedder, OnnxTextEmbedder)
    return embedder


def _shared_embedder(side: Side, model: LayoutModel, options: RuntimeOptions) -> _OnnxEmbedder:
    with _shared_lock:
        key = (side, model.setting, options)
        if key not in _shared:
            _shared[key] = (OnnxImageEmbedder if side == "visual" else OnnxTextEmbedder)(model, options)
        return _shared[key]

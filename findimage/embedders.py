"""Vectorize text and images into CLIP's shared 512-dim space (float32, L2-normalised)."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Fidelity:
    """How close the quantized model's embeddings are to the exact (float32) model's, as cosines."""

    min_cosine: float
    mean_cosine: float
    probes: int

    def line(self) -> str:
        return f"min cosine {self.min_cosine:.4f}, mean {self.mean_cosine:.4f} over {self.probes} probes"


MIN_PER_STREAM = 4  # images per inference stream below which a batch runs as one


class SentenceTransformerEmbedder:
    """One sentence-transformers model, loaded once per process on first use, usable from many threads.

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
        self._model = None
        self._input_size: tuple[int, int] | None = None  # (shortest edge, resample) of the image processor
        self._load_lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when used from two threads at once; on a
        # 2-core CPU serialising inference costs nothing, as torch already uses both cores.
        self._run_lock = threading.Lock()
        self._pool = None  # inference streams for big image batches, made on first use
        self._threads_at_load = 1

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
        use_torch_threads(self.threads)
        _keep_freed_memory_for_reuse()
        import torch

        self._threads_at_load = torch.get_num_threads()
        model = self._open()
        self._input_size = _processor_input_size(model)
        if self.quantize == "int8":
            model = self._quantized(model)
        log.info("loaded model %s%s", self.model_id, " (int8)" if self.quantized else "")
        return model

    def _open(self):
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
        _use_fast_activations(model)
        return model

    def _quantized(self, model, release: bool = True):
        """The int8 model if it passes the fidelity check against the exact model, else the exact model.

        The probes are pictures for an image model (one with an image processor), sentences otherwise."""
        probes = probe_images() if self._input_size else list(PROBE_SENTENCES)
        with self._run_lock:
            exact = self._run(model, probes)
            replaced = _linear_weight_ranges(model)
            quantized = _quantize_int8(model)  # in place: no second copy of the weights in memory
            approx = self._run(quantized, probes)
            if release and _release_pages(replaced) and not np.array_equal(self._run(quantized, probes), approx):
                log.warning("int8 model of %s changed after releasing its float32 weights; reloading", self.model_id)
                return self._quantized(self._open(), release=False)
        cosines = np.sum(exact * approx, axis=1)
        self.fidelity = Fidelity(float(cosines.min()), float(cosines.mean()), len(probes))
        if self.fidelity.min_cosine < self.min_cosine:
            log.warning("int8 quantization of %s refused: %s is below FINDIMAGE_QUANTIZE_MIN_COSINE=%s; "
                        "using the exact float32 model", self.model_id, self.fidelity.line(), self.min_cosine)
            return self._open()
        log.info("int8 quantization of %s accepted: %s", self.model_id, self.fidelity.line())
        self.quantized = True
        return quantized

    @staticmethod
    def _run(model, inputs: list) -> np.ndarray:
        return normalise_rows(model.encode(inputs, batch_size=max(1, len(inputs)), convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False))

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

    def _encode(self, inputs: list) -> np.ndarray:
        model = self.model
        try:
            with self._run_lock:
                vectors = self._run(model, inputs)
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return self._checked(vectors)

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[1] != DIMS:
            raise ModelError(f"The model {self.model_id} returns {vectors.shape[1]} dims; findimage needs {DIMS}.")
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
                                                  zip(bounds[:-1], bounds[1:])))
        except Exception as exc:
            raise ModelError(f"The model {self.model_id} failed: {exc}") from exc
        return self._checked(np.vstack(parts))

    @property
    def _streams(self) -> int:
        """Parallel inference streams for batches: the torch thread count (FINDIMAGE_TORCH_THREADS or one
        per core); images only, as tokenizers must not be shared between threads."""
        _ = self.model
        return self._threads_at_load if self._input_size else 1

    def _stream_pool(self):
        with self._load_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self._streams, thread_name_prefix="inference",
                                                initializer=use_torch_threads, initargs=(1,))
        return self._pool


def use_torch_threads(threads: int) -> None:
    """Intra-op threads of torch for this process (0: leave torch's default, one per core).

    One thread suits a query process that shares its cores with an indexer: torch splits every
    operation across its threads, and when another process holds one core, each operation waits
    for the descheduled half (measured here: single queries 5-10x slower, p95 worse still).
    """
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_allocator_tuned = False


def _keep_freed_memory_for_reuse() -> None:
    """Let glibc reuse freed activation buffers instead of returning them to the kernel after every
    operation: CLIP's 5-20 MB intermediates otherwise cost fresh page faults each time (measured:
    int8 inference 38 -> 33 CPU-ms per image). Keeps at most a few dozen MB more resident."""
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # the largest glibc accepts
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def _use_fast_activations(model) -> None:
    """CLIP's quick GELU, x * sigmoid(1.702 x), as one in-place SiLU pass: the same values (to 1 ulp)
    without two activation-sized temporaries per layer (measured: int8 inference 45 -> 37 CPU-ms/image)."""
    import torch

    class QuickGELU(torch.nn.Module):
        def forward(self, x):
            if torch.is_grad_enabled():  # in-place would break autograd; inference runs without it
                return x * torch.sigmoid(1.702 * x)
            return torch.nn.functional.silu(x.mul_(1.702), inplace=True).div_(1.702)

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__ == "QuickGELUActivation":
                setattr(module, name, QuickGELU())


def _quantize_int8(model):
    """Dynamic int8 quantization of the linear layers, in place: ~2-3x faster CLIP on CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch deprecates its quantized tensors (DeprecationWarning, UserWarning)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _linear_weight_ranges(model) -> list[tuple[int, int]]:
    """(address, bytes) of the float32 weights quantization replaces."""
    import torch

    return [(m.weight.data_ptr(), m.weight.nbytes) for m in model.modules() if isinstance(m, torch.nn.Linear)]


_MADV_DONTNEED = 4


def _release_pages(ranges: list[tuple[int, int]]) -> bool:
    """Give the kernel back the pages of replaced float32 weights, where they are mapped from the model's
    weight files (safetensors loads by mmap): they stay resident after the fidelity check read them, ~0.5 GB
    for the two CLIP models. Only whole pages inside those ranges and inside a file mapping: a later read,
    if any, refills them from the file. Returns whether anything was released (Linux only)."""
    try:
        import ctypes

        files = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5].endswith(".safetensors"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    files.append((start, end))
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        page = os.sysconf("SC_PAGE_SIZE")
        released = False
        for address, size in ranges:
            low, high = -(-address // page) * page, (address + size) // page * page
            if high > low and any(start <= address and address + size <= end for start, end in files):
                released |= libc.madvise(ctypes.c_void_p(low), ctypes.c_size_t(high - low), _MADV_DONTNEED) == 0
        return released
    except (OSError, AttributeError, ValueError):
        return False


def _processor_input_size(model) -> tuple[int, int] | None:
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


PROBE_SENTENCES = (
    "a snow covered mountain", "ein schneebedeckter Berg", "red roses in a glass vase", "un chat qui dort",
    "perro corriendo en la playa", "team photo at the summer party on the roof terrace", "夜の駅のホーム",
    "whiteboard with a sketch", "Kinder spielen im Park bei Sonnenuntergang", "close-up of a circuit board",
)


def probe_images(count: int = 8, size: int = 256) -> list[Image.Image]:
    """Deterministic picture-like probes (gradients, shapes, textures, noise) for the fidelity check."""
    rng = np.random.default_rng(20240611)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for i in range(count):
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = top * (1 - y[..., None]) + bottom * y[..., None]
        for _ in range(3 + i):
            cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.35)]
            mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
            img[mask] = rng.uniform(0, 255, 3)
        if i % 2:  # stripes: high-frequency content
            img += 40 * np.sin(2 * np.pi * (x * rng.uniform(4, 30) + y * rng.uniform(0, 10)))[..., None]
        img += rng.normal(0, 4 + 4 * (i % 3), img.shape)
        images.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"))
    return images


_shared: dict[tuple[str, str], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(name_or_path: str, quantize: str = "off", min_cosine: float = 0.99,
                    threads: int = 0) -> SentenceTransformerEmbedder:
    """The process-wide embedder for a model, so each model is loaded once per process."""
    with _shared_lock:
        key = (name_or_path, quantize, min_cosine, threads)
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(name_or_path, quantize, min_cosine, threads)
        return _shared[key]


def image_embedder(settings) -> SentenceTransformerEmbedder:
    return shared_embedder(settings.image_model, settings.quantize, settings.quantize_min_cosine,
                           settings.torch_threads)


def text_embedder(settings) -> TextEmbedder:
    if settings.text_embedder == "elasticsearch":
        from .es_infer import InferTextEmbedder

        remote = InferTextEmbedder.from_settings(settings)
        if settings.text_fallback == "off":
            return remote
        from .text_fallback import FallbackTextEmbedder

        return FallbackTextEmbedder(remote, lambda: local_text_embedder(settings))
    return local_text_embedder(settings)


def local_text_embedder(settings) -> SentenceTransformerEmbedder:
    return shared_embedder(settings.text_model, settings.quantize, settings.quantize_min_cosine,
                           settings.torch_threads)

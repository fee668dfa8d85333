"""How this process runs the models, apart from what they compute: the runtime options the settings give
(both runtimes), torch threads, the allocator, activations without temporaries, and int8 quantization with
its fidelity check against the exact model (the check ONNX Runtime's int8 passes too: models/onnx_runtime.py)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from findimage.config import CoreSettings

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound="torch.nn.Module")


@dataclass(frozen=True)
class RuntimeOptions:
    """How the settings ask every model of this process to run, whichever runtime computes it: int8 and its
    threshold (FINDIMAGE_QUANTIZE, FINDIMAGE_QUANTIZE_MIN_COSINE), threads (FINDIMAGE_TORCH_THREADS: torch's, or
    ONNX Runtime's; 0: one per core) and ONNX Runtime's execution providers (FINDIMAGE_ONNX_PROVIDERS; none
    named: CUDA where present, else the CPU)."""

    quantize: str = "off"
    min_cosine: float = 0.99
    threads: int = 0
    providers: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: CoreSettings) -> RuntimeOptions:
        return cls(settings.quantize, settings.quantize_min_cosine, settings.torch_threads, settings.onnx_providers)


@dataclass(frozen=True)
class Fidelity:
    """How close the quantized model's embeddings are to the exact (float32) model's, as cosines."""

    min_cosine: float
    mean_cosine: float
    probes: int

    def line(self) -> str:
        return f"min cosine {self.min_cosine:.4f}, mean {self.mean_cosine:.4f} over {self.probes} probes"

    @classmethod
    def of(cls, exact: np.ndarray, approx: np.ndarray) -> Fidelity:
        """The cosines between the rows of two L2-normalised embeddings of the same probes."""
        cosines = np.sum(exact * approx, axis=1)
        return cls(float(cosines.min()), float(cosines.mean()), len(exact))

    def accepted(self, min_cosine: float, model_id: str) -> bool:
        """Whether the int8 model may replace the exact one; the decision is logged either way."""
        if self.min_cosine < min_cosine:
            log.warning("int8 quantization of %s refused: %s is below FINDIMAGE_QUANTIZE_MIN_COSINE=%s; "
                        "using the exact float32 model", model_id, self.line(), min_cosine)
            return False
        log.info("int8 quantization of %s accepted: %s", model_id, self.line())
        return True


def quantized_if_faithful(model: Model, run: Callable[[Model], np.ndarray], reopen: Callable[[], Model],
                          min_cosine: float, model_id: str) -> tuple[Model | None, Fidelity]:
    """(the int8 model or None, its Fidelity): None when the int8 embeddings of the probes (`run(model)`)
    fall below `min_cosine` against the exact ones. Quantizes in place: the caller reopens the exact model."""
    exact, approx, quantized = _quantized(model, run, release=True)
    if quantized is None:
        log.warning("int8 model of %s changed after releasing its float32 weights; reloading", model_id)
        exact, approx, quantized = _quantized(reopen(), run, release=False)
    fidelity = Fidelity.of(exact, approx)
    return (quantized if fidelity.accepted(min_cosine, model_id) else None), fidelity


def _quantized(model: Model, run: Callable[[Model], np.ndarray],
               release: bool) -> tuple[np.ndarray, np.ndarray, Model | None]:
    """(the probes' exact embeddings, their int8 ones, the int8 model, made in place); with `release`, the
    float32 weights' pages are given back, and the model is None when that changed what it computes."""
    exact = run(model)
    replaced = _linear_weight_ranges(model)
    quantized = quantize_int8(model)  # in place: no second copy of the weights in memory
    approx = run(quantized)
    if release and release_pages(replaced) and not np.array_equal(run(quantized), approx):
        return exact, approx, None
    return exact, approx, quantized


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


def keep_freed_memory_for_reuse() -> None:
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


def use_fast_activations(model: torch.nn.Module) -> None:
    """CLIP's quick GELU, x * sigmoid(1.702 x), as one in-place SiLU pass: the same values (to 1 ulp)
    without two activation-sized temporaries per layer (measured: int8 inference 45 -> 37 CPU-ms/image)."""
    import torch

    class QuickGELU(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.is_grad_enabled():  # in-place would break autograd; inference runs without it
                return x * torch.sigmoid(1.702 * x)
            return torch.nn.functional.silu(x.mul_(1.702), inplace=True).div_(1.702)

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__ == "QuickGELUActivation":
                setattr(module, name, QuickGELU())


def quantize_int8(model: Model) -> Model:
    """Dynamic int8 quantization of the linear layers, in place: ~2-3x faster CLIP on CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch deprecates its quantized tensors (DeprecationWarning, UserWarning)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _linear_weight_ranges(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(address, bytes) of the float32 weights quantization replaces."""
    import torch

    return [(m.weight.data_ptr(), m.weight.nbytes) for m in model.modules() if isinstance(m, torch.nn.Linear)]


_MADV_DONTNEED = 4


def release_pages(ranges: list[tuple[int, int]]) -> bool:
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

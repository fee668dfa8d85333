"""How this process runs ONNX models, apart from what they compute: the one place that sets ONNX Runtime's
threads and execution providers, and int8 (ONNX Runtime's dynamic quantization of the linear layers, kept
only when it passes the same fidelity check as torch's int8: models/runtime.py)."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from findimage.errors import ModelError
from findimage.models.runtime import Fidelity, RuntimeOptions

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
PREFERRED = ("CUDAExecutionProvider",)  # used where this onnxruntime has it, before the CPU
# The linear layers, as torch's int8 quantizes them (nn.Linear): integer convolutions are slower on CPUs.
INT8_OPERATORS = ["MatMul", "Gemm"]
INT8_RECIPE = 2  # raise it when int8_model quantizes differently: copies cached by the old recipe are not used


def providers(options: RuntimeOptions) -> list[str]:
    """The execution providers sessions use: FINDIMAGE_ONNX_PROVIDERS as named, else CUDA where this
    onnxruntime has it, then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if not options.providers:
        return [name for name in PREFERRED if name in available] + [CPU]
    missing = [name for name in options.providers if name not in available]
    if missing:
        raise ModelError(f"FINDIMAGE_ONNX_PROVIDERS names {', '.join(missing)}, which this onnxruntime does not "
                         f"have (it has {', '.join(available)}).")
    return list(options.providers)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def open_session(model: Path | bytes, threads: int, options: RuntimeOptions) -> onnxruntime.InferenceSession:
    """An inference session on `threads` intra-op threads (0: one per core). The threads sleep between runs
    instead of spinning: the bot shares its cores with the indexer, which spinning threads would slow down."""
    import onnxruntime

    settings = onnxruntime.SessionOptions()
    settings.intra_op_num_threads = threads
    settings.inter_op_num_threads = 1
    settings.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    settings.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.log_severity_level = 3  # errors only: its warnings about unused initializers are noise in our log
    source = model if isinstance(model, bytes) else str(model)
    try:
        return onnxruntime.InferenceSession(source, sess_options=settings, providers=providers(options))
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime's own errors (a broken or unsupported graph) share no base class
        raise ModelError(f"ONNX Runtime cannot open {model if isinstance(model, Path) else 'the model'}: "
                         f"{exc}") from exc


class _QuantizerAdvice(logging.Filter):
    """onnxruntime's quantizer writes its advice (run its pre-processing first) to the root logger at every
    load: not something an admin can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


def int8_cache() -> Path:
    """Where int8 copies are kept: in the Hugging Face cache the models come from (a volume in
    docker-compose.yml), so a restart opens the copy instead of quantizing again (seconds of CPU and about a
    gigabyte more at its peak for a ViT-B/32, docs/performance.md)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "findimage-int8"


def int8_model(path: Path, model_id: str) -> Path | bytes:
    """The model with the weights of its linear layers in int8 (activations quantized per run): the copy
    cached for this model (`model_id` names its content), else quantized now and cached where writable."""
    import onnxruntime

    key = f"{model_id}|{path.parent.name}/{path.name}|onnxruntime {onnxruntime.__version__}|{INT8_RECIPE}"
    cached = int8_cache() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.onnx"
    if cached.is_file():
        return cached
    quantized = _quantized(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        partial.write_bytes(quantized)
        os.replace(partial, cached)  # whole or absent: another process may open it at any moment
    except OSError as exc:
        log.info("the int8 copy of %s is not kept (%s): it is quantized again at the next start", model_id, exc)
    return quantized


def _quantized(path: Path) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet, root = _QuantizerAdvice(), logging.getLogger()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="findimage-int8-") as folder:
            target = Path(folder) / "model.onnx"
            # reduce_range: 7-bit weights. On CPUs without VNNI (AVX2, AVX-512 before it) onnxruntime multiplies
            # uint8 activations by int8 weights with an instruction whose 16-bit sums saturate at full range:
            # its documentation advises reduce_range there, and it is what keeps int8 faithful on them (the
            # test models: text 0.970 -> 0.9999, images 0.991 -> 0.9999 cosine to float32), at no cost in speed.
            quantize_dynamic(path, target, op_types_to_quantize=INT8_OPERATORS, weight_type=QuantType.QInt8,
                             reduce_range=True)
            return target.read_bytes()
    finally:
        root.removeFilter(quiet)


def quantized_if_faithful(path: Path, exact: onnxruntime.InferenceSession,
                          run: Callable[[onnxruntime.InferenceSession], np.ndarray], threads: int,
                          options: RuntimeOptions,
                          model_id: str) -> tuple[onnxruntime.InferenceSession, Fidelity | None]:
    """(the int8 session where its embeddings of the probes (`run(session)`) stay at or above
    FINDIMAGE_QUANTIZE_MIN_COSINE against `exact`'s, else `exact`; the Fidelity measured, None where the
    quantizer failed)."""
    try:
        quantized = open_session(int8_model(path, model_id), threads, options)
    except Exception as exc:  # a graph the quantizer does not handle: the exact model answers
        log.warning("int8 quantization of %s failed (%s); using the exact float32 model", model_id, exc)
        return exact, None
    fidelity = Fidelity.of(run(exact), run(quantized))
    return (quantized if fidelity.accepted(options.min_cosine, model_id) else exact), fidelity

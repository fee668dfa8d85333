"""Which failures of the text reader's child are its memory limit: those it answers as "needed more than
the text reader's N MB", where other failures keep their own sentence."""
from __future__ import annotations

import errno

from findimage.errors import TextReadingError
from findimage.imaging import ImageError
from findimage.models.reader_process import out_of_memory


def wrapped(cause: BaseException) -> TextReadingError:
    """As the reader raises what the engine raised: one sentence, the engine's exception as its cause."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise TextReadingError(f"Reading text in a 1280x800 picture failed: {exc}.") from exc
    except TextReadingError as raised:
        return raised


def test_refused_allocations_are_told_apart_from_other_failures():
    assert out_of_memory(MemoryError())
    assert out_of_memory(wrapped(MemoryError("Unable to allocate 7.97 MiB for an array")))
    assert out_of_memory(wrapped(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code "
                                              "returned while running Conv node. Status Message: std::bad_alloc")))
    assert out_of_memory(wrapped(ImportError("cv2.abi3.so: failed to map segment from shared object")))
    assert out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))

    assert not out_of_memory(wrapped(RuntimeError("RuntimeException: bad input shape")))
    assert not out_of_memory(ImageError("not an image (unrecognised format)"))
    assert not out_of_memory(OSError(errno.EIO, "Input/output error"))

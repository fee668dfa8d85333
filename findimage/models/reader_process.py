"""Reading text in a child process: its engine is loaded once there, and a picture that hangs or crashes it,
or needs more memory than the child may take, costs that child, never the caller (the indexer's text stage,
the bot remembering a posted image). `ReaderPool` reads with several children at once (the indexer).

A picture is decoded in the child as small as for an embedding first (a JPEG drafted down to 1/8), which is
all a photo without text needs (findimage.models.text_reader: the probe), or not at all where the indexer
sends the small copy it kept of the pixels it decoded for the embedding (`ArchivePicture.copy`). Only a
screen, or a photo whose probe found a line, is decoded (again) at the size the recogniser needs."""
from __future__ import annotations

import errno
import multiprocessing
import queue
import resource
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from findimage import logs
from findimage.config import ReadingSettings
from findimage.records import ReadText

if TYPE_CHECKING:
    from PIL import Image

# Pictures are decoded for reading with their short side drafted down to no less than this: the reader
# detects at a bounded size, but recognises lines cut from the decoded picture.
READ_MIN_SIDE = 1600
# ... and first as small as an embedding decodes them (CLIP's input side): the probe's copy comes from that.
PROBE_DRAFT_SIDE = 224

# How a refused allocation shows when it is not a MemoryError: C++'s std::bad_alloc and onnxruntime's own
# words (in its RuntimeException), the loader failing to map a library's data, ENOMEM's text.
_ALLOCATION_FAILED = ("bad_alloc", "Failed to allocate", "failed to map segment", "Cannot allocate memory")


@dataclass(frozen=True)
class ReadingLimits:
    threads: int
    timeout_seconds: float
    max_pixels: int
    budget: int
    memory: int  # bytes each child may hold (its RLIMIT_DATA)
    readers: int = 1  # children reading at once (ReaderPool)

    @classmethod
    def of(cls, settings: ReadingSettings) -> ReadingLimits:
        return cls(settings.ocr_threads, settings.ocr_timeout_seconds, settings.max_image_pixels,
                   settings.decode_budget_bytes, settings.ocr_memory_bytes, settings.ocr_readers)


@dataclass(frozen=True)
class ArchivePicture:
    """An archive image to read: the file as the scan saw it (the child reads it itself, as
    findimage.archive_files reads an archive file, and only where it must decode it), and where the indexer
    kept one, the small copy of the pixels it decoded for the embedding (text_reader.probe_copy) with the
    original's size (after EXIF orientation): a photo without text is then read without any decode."""

    root: str
    relative_path: str
    size: int
    mtime: float
    copy: Image.Image | None = None
    dimensions: tuple[int, int] = (0, 0)


class ReaderProcess:
    """A child process that reads text: its engine is loaded once; a picture that takes longer than the
    timeout is answered as timed out, one that needs more memory than the limit or kills the child as
    failed, and the next picture gets a new child."""

    def __init__(self, limits: ReadingLimits):
        self.limits = limits
        self._context = multiprocessing.get_context("spawn")  # no copy of the parent's torch threads
        self._process: Any = None
        self._connection: Connection | None = None

    def read(self, picture: bytes | ArchivePicture) -> ReadText:
        """The text of an image file's bytes, or of an archive image; never raises for the picture."""
        if self._process is None or not self._process.is_alive():
            self._start()
        assert self._connection is not None
        try:
            self._connection.send((picture, self.limits.max_pixels, self.limits.budget))
        except OSError:  # the child ended before taking it all: its answer, or its end, is read below
            pass
        if not self._connection.poll(self.limits.timeout_seconds):
            self._stop()
            return ReadText("timed_out", reason=f"reading its text took longer than {self.limits.timeout_seconds:g} s")
        try:
            kind, payload = self._connection.recv()
        except (EOFError, OSError):
            self._stop()
            return ReadText("failed", reason="the text reader stopped while reading it (out of memory?)")
        if kind == "spent":  # out of memory: the child ended after answering
            self._stop()
        return ReadText("read", lines=tuple(payload)) if kind == "read" else ReadText("failed", reason=payload)

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self.limits.threads, self.limits.memory,
                                                                   logs.snapshot()),
                                              daemon=True, name="findimage-text-reader")
        self._process.start()
        child.close()
        self._connection = parent

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(10)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

    def close(self) -> None:
        self._stop()


class ReaderPool:
    """`limits.readers` reader children, each driven by a thread of its own here, so that pictures submitted
    are read at the same time (one per core), each as ReaderProcess reads it: under the timeout, and in its
    own child (a hang, a crash or a picture over the memory limit costs that child, not the others). Children
    start on the first pictures; the caller bounds how many pictures it submits ahead."""

    def __init__(self, limits: ReadingLimits):
        self.limits = limits
        self._readers = [ReaderProcess(limits) for _ in range(max(1, limits.readers))]
        self._idle: queue.SimpleQueue[ReaderProcess] = queue.SimpleQueue()
        for reader in self._readers:
            self._idle.put(reader)
        self._threads = ThreadPoolExecutor(max_workers=len(self._readers), thread_name_prefix="text-reader")

    def submit(self, picture: bytes | ArchivePicture) -> Future[ReadText]:
        return self._threads.submit(self._read, picture)

    def _read(self, picture: bytes | ArchivePicture) -> ReadText:
        reader = self._idle.get()  # as many threads as readers: one is always idle here
        try:
            return reader.read(picture)
        finally:
            self._idle.put(reader)

    def close(self) -> None:
        """Pictures not started are dropped; those being read are waited for (at most the timeout)."""
        self._threads.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers:
            reader.close()


def _serve(connection: Connection, threads: int, memory: int, log: logs.Setup | None = None) -> None:
    """The child: under its memory limit, decode each picture within the decode budget, read its text, answer
    one message each. A picture that needed more memory than the limit is answered as failed and the child
    ends ("spent"): the next picture gets a fresh child, not the heap and engine arena this one grew. It logs
    as its parent does (a spawned child starts without the parent's log: `log`, its level, format, secrets)."""
    if log is not None:
        logs.apply(log)
    from findimage.imaging import ImageError
    from findimage.models.text_reader import TextReader, TextReadingError

    _limit_memory(memory)  # after the imports above (numpy, Pillow: ~110 MB), before the engine loads
    reader = TextReader(threads=threads)
    while True:
        try:
            picture, max_pixels, budget = connection.recv()
        except MemoryError:  # a file larger than the limit leaves
            connection.send(("spent", over_limit(memory)))
            return
        except (EOFError, OSError):
            return
        try:
            connection.send(("read", _read(reader, picture, max_pixels, budget)))
        except Exception as exc:  # noqa: BLE001 - one picture's failure is recorded, the child serves on
            if out_of_memory(exc):
                connection.send(("spent", over_limit(memory)))
                return
            if isinstance(exc, (ImageError, TextReadingError)):
                connection.send(("failed", str(exc)))
            else:
                connection.send(("failed", f"the text reader failed ({type(exc).__name__})"))
        del picture  # not held while the next picture arrives


def _read(reader: Any, picture: bytes | ArchivePicture, max_pixels: int, budget: int) -> list:
    """One picture's lines; its decoded pixels are let go on return, before the next one is received. The
    picture is decoded small first (or not at all where a copy came with it), and at READ_MIN_SIDE only when
    the reader asks for the whole picture; one decoded whole already (not a drafted JPEG) is not decoded again."""
    from findimage.imaging import prepare_bytes
    from findimage.models.text_reader import probe_copy

    data = picture if isinstance(picture, bytes) else None

    def decoded(min_side: int) -> Any:
        nonlocal data
        if data is None:
            assert isinstance(picture, ArchivePicture)
            data = _archive_bytes(picture, budget)
        return prepare_bytes(data, min_side, max_pixels=max_pixels, budget=budget)

    if isinstance(picture, ArchivePicture) and picture.copy is not None:
        return reader.read(picture.copy, lambda: decoded(READ_MIN_SIDE).image, picture.dimensions)
    first = decoded(PROBE_DRAFT_SIDE)
    size, image = (first.width, first.height), first.image
    del first
    # Decoded whole already (not a drafted JPEG): read from these pixels, not decoded again.
    whole = (lambda: image) if image.size == size else (lambda: decoded(READ_MIN_SIDE).image)
    return reader.read(probe_copy(image), whole, size)


def _archive_bytes(picture: ArchivePicture, budget: int) -> bytes:
    from findimage.archive_files import ArchiveFileRefused, Indexed, read_archive_file
    from findimage.imaging import ImageError

    try:
        return read_archive_file(Path(picture.root), picture.relative_path, budget,
                                 Indexed(picture.size, picture.mtime))
    except ArchiveFileRefused as exc:
        raise ImageError(f"cannot read: {exc}") from None


def _limit_memory(limit: int) -> None:
    """The child's RLIMIT_DATA: past it an allocation fails in the child (a MemoryError, onnxruntime's
    bad_alloc), where the kernel's OOM killer might have picked the bot or the indexer.

    RLIMIT_DATA rather than RLIMIT_AS: the address space also counts what threads reserve and never use
    (glibc's 64 MB malloc arena per thread): measured with onnxruntime on this engine's model, each added
    thread grew it by ~40 MB and the data by 8 MB (its stack), resident memory by nothing. An address-space
    limit would have to follow FINDIMAGE_OCR_THREADS and the cores; the data limit counts the private memory
    that can become resident (heap, numpy's and onnxruntime's buffers, stacks)."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def over_limit(memory: int) -> str:
    return f"reading its text needed more than the text reader's {memory / 2**20:,.0f} MB (FINDIMAGE_OCR_MEMORY_MB)"


def out_of_memory(exc: BaseException) -> bool:
    """Whether a failure was an allocation refused (the child at its memory limit): a MemoryError or ENOMEM
    anywhere in its chain (the reader wraps what the engine raises), or an engine's words for one."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, MemoryError) or (isinstance(found, OSError) and found.errno == errno.ENOMEM):
            return True
        if any(marker in str(found) for marker in _ALLOCATION_FAILED):
            return True
        found = found.__cause__ or found.__context__
    return False

"""Reading text in a child process: its engine is loaded once there, and a picture that hangs or crashes it
costs that child, never the caller (the indexer's text stage, the bot remembering a posted image)."""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from findimage.config import Settings
from findimage.records import ReadText

# Pictures are decoded for reading with their short side drafted down to no less than this: the reader
# detects at a bounded size, but recognises lines cut from the decoded picture.
READ_MIN_SIDE = 1600


@dataclass(frozen=True)
class ReadingLimits:
    threads: int
    timeout_seconds: float
    max_pixels: int
    budget: int

    @classmethod
    def of(cls, settings: Settings) -> ReadingLimits:
        return cls(settings.ocr_threads, settings.ocr_timeout_seconds, settings.max_image_pixels,
                   settings.decode_budget_bytes)


class ReaderProcess:
    """A child process that reads text: its engine is loaded once, a picture that takes longer than the
    timeout (or kills the child) is answered as failed, and the next picture gets a new child."""

    def __init__(self, limits: ReadingLimits):
        self.limits = limits
        self._context = multiprocessing.get_context("spawn")  # no copy of the parent's torch threads
        self._process: Any = None
        self._connection: Connection | None = None

    def read(self, data: bytes) -> ReadText:
        if self._process is None or not self._process.is_alive():
            self._start()
        assert self._connection is not None
        self._connection.send((data, self.limits.max_pixels, self.limits.budget))
        if not self._connection.poll(self.limits.timeout_seconds):
            self._stop()
            return ReadText("failed", reason=f"reading its text took longer than {self.limits.timeout_seconds:g} s")
        try:
            kind, payload = self._connection.recv()
        except (EOFError, OSError):
            self._stop()
            return ReadText("failed", reason="the text reader stopped while reading it (out of memory?)")
        return ReadText("read", lines=tuple(payload)) if kind == "read" else ReadText("failed", reason=payload)

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self.limits.threads), daemon=True,
                                              name="findimage-text-reader")
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


def _serve(connection: Connection, threads: int) -> None:
    """The child: decode each picture within the decode budget, read its text, answer one message each."""
    from findimage.imaging import ImageError, prepare_bytes
    from findimage.models.text_reader import TextReader, TextReadingError

    reader = TextReader(threads=threads)
    while True:
        try:
            data, max_pixels, budget = connection.recv()
        except (EOFError, OSError):
            return
        try:
            image = prepare_bytes(data, READ_MIN_SIDE, max_pixels=max_pixels, budget=budget).image
            connection.send(("read", reader.read(image)))
        except (ImageError, TextReadingError) as exc:
            connection.send(("failed", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one picture's failure is recorded, the child serves on
            connection.send(("failed", f"the text reader failed ({type(exc).__name__})"))



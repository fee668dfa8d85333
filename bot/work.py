"""The slow part of an answer (download, embed, search, upload) runs here, after Slack got its ack.

A pool of our own instead of Bolt's listener executor: Bolt runs every listener (and so every ack) on
its executor, and if searches occupied those threads, 20 commands at once would wait for each other's
searches before being acked. Here the listeners only ack and enqueue.

The queue is bounded (FINDIMAGE_MAX_QUEUED answers accepted and not finished): past it, a request is
refused at once and the user told to try again, instead of an answer that arrives minutes late or is
lost when the process is restarted with a long queue. On shutdown the pool stops taking work and
finishes what it accepted (`drain`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVarTuple

from findimage import logs
from findimage.config import Settings
from findimage.i18n import N_

from .metrics import ANSWERS_QUEUED

log = logging.getLogger(__name__)
Args = TypeVarTuple("Args")  # a job's arguments, checked against the job where it is submitted

# The models run one query at a time (see embedders); more threads overlap Slack downloads and uploads.
DEFAULT_WORKERS = 4
DEFAULT_MAX_QUEUED = 32
BUSY_TEXT = N_("I'm busy with other searches right now and could not take this one. Please try again in a minute.")


class Ticket:
    """A place in the queue, taken before the ack so the ack can say whether the answer will come.

    Used as a context manager: a place that was never given its job (the ack failed, say) is given
    back when the block ends, so a full queue cannot fill up with places nobody holds.
    """

    def __init__(self, pool: WorkPool):
        self._pool = pool
        self._used = False

    def submit(self, job: Callable[[*Args], object], *args: *Args) -> None:
        self._used = True
        self._pool._executor.submit(logs.carried(self._pool._run), job, args)  # the request's ids go along

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._used:
            self._used = True
            self._pool._release()


class WorkPool:
    def __init__(self, workers: int = DEFAULT_WORKERS, max_queued: int = DEFAULT_MAX_QUEUED):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="findimage-answer")
        self.max_queued = max_queued
        self._pending = 0
        self._closed = False
        self._changed = threading.Condition()

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkPool:
        return cls(max_queued=settings.max_queued)

    @property
    def pending(self) -> int:
        """Answers queued or in progress (shown by /healthz and /metrics)."""
        with self._changed:
            return self._pending

    def reserve(self) -> Ticket | None:
        """A ticket for one job, or None while the queue is full or the process is stopping."""
        with self._changed:
            if self._closed or self._pending >= self.max_queued:
                return None
            self._pending += 1
        ANSWERS_QUEUED.labels().inc()
        return Ticket(self)

    def submit(self, job: Callable[[*Args], object], *args: *Args) -> bool:
        """Queue `job(*args)`; False (nothing queued) when full: the caller tells the user it is busy."""
        ticket = self.reserve()
        if ticket is None:
            log.warning("refused %s: %d answers already queued", getattr(job, "__name__", job), self.pending)
            return False
        with ticket:
            ticket.submit(job, *args)
        return True

    def _run(self, job: Callable, args: tuple) -> None:
        try:
            job(*args)
        except Exception:  # jobs answer their own failures; this is the last resort so nothing dies silently
            log.exception("answer job %s failed", getattr(job, "__name__", job))
        finally:
            self._release()

    def _release(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()
        ANSWERS_QUEUED.labels().dec()

    def drain(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> int:
        """Stop taking work and wait up to `timeout` s for what was accepted; the number left unfinished."""
        deadline = clock() + timeout
        with self._changed:
            self._closed = True
            while self._pending and (remaining := deadline - clock()) > 0:
                self._changed.wait(remaining)
            left = self._pending
        if left:
            log.error("stopping with %d answer(s) unfinished after %g s", left, timeout)
        else:
            log.info("every accepted answer was delivered; stopping")
        self._executor.shutdown(wait=False, cancel_futures=True)
        return left

    def shutdown(self, wait: bool = True) -> None:
        with self._changed:
            self._closed = True
        self._executor.shutdown(wait=wait)

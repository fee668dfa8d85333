"""The slow part of an answer (download, embed, search, upload) runs here, after Slack got its ack.

A pool of our own instead of Bolt's listener executor: Bolt runs every listener (and so every ack) on
its executor, and if searches occupied those threads, 20 commands at once would wait for each other's
searches before being acked. Here the listeners only ack and enqueue.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger(__name__)

# The models run one query at a time (see embedders); more threads overlap Slack downloads and uploads.
DEFAULT_WORKERS = 4


class WorkPool:
    def __init__(self, workers: int = DEFAULT_WORKERS):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="findimage-answer")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Answers queued or in progress (shown by /healthz)."""
        with self._lock:
            return self._pending

    def submit(self, job: Callable, *args) -> None:
        with self._lock:
            self._pending += 1
        self._executor.submit(self._run, job, args)

    def _run(self, job: Callable, args: tuple) -> None:
        try:
            job(*args)
        except Exception:  # jobs answer their own failures; this is the last resort so nothing dies silently
            log.exception("answer job %s failed", getattr(job, "__name__", job))
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)

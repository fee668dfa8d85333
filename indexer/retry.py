"""Store calls of a pass that outlive a store restart: retried with backoff while the store is down."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from findimage.errors import BackendUnavailable

log = logging.getLogger(__name__)

# How long a pass waits for a store that went away mid-pass (e.g. Elasticsearch restarting) before it
# gives up; the next scheduled pass starts over from what was written.
RETRY_SECONDS = 600.0


T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How a retried call waits: `first_wait` seconds, doubled after each failure up to `max_wait`, while it
    fails with `retry_on` (e.g. BackendBusy: a cluster that answers but is still starting)."""

    first_wait: float = 1.0
    max_wait: float = 10.0
    retry_on: type[BackendUnavailable] = BackendUnavailable


def retry_while_unavailable(operation: Callable[[], T], give_up_after: float | None = None,
                            backoff: Backoff = Backoff(), clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], object] = time.sleep) -> T:
    """Run a store call, retrying with exponential backoff while the store is down.

    Store writes are idempotent (documents are keyed by path), so repeating one that failed halfway
    loses and duplicates nothing. After `give_up_after` seconds (RETRY_SECONDS) the error is raised.
    """
    deadline = clock() + (RETRY_SECONDS if give_up_after is None else give_up_after)
    wait, attempt = backoff.first_wait, 0
    while True:
        attempt += 1
        try:
            return operation()
        except backoff.retry_on as exc:
            left = deadline - clock()
            if left <= 0:
                raise
            pause = min(wait, left)
            log.warning("%s Retrying in %.0fs (attempt %d).", exc, pause, attempt)
            sleep(pause)
            wait = min(backoff.max_wait, wait * 2)

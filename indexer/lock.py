"""One indexing pass at a time: a lock file per data directory (findimage.locks), and with Elasticsearch
also a lease in the index itself (an indexing lease, from findimage.backends), since indexers with other data folders or
on other machines write the same index and never see each other's lock files."""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from findimage.backends import indexing_lease
from findimage.config import Settings
from findimage.errors import BackendBusy, LeaseHeld
from findimage.locks import AlreadyRunning, ProcessLock, pass_lock, scheduler_lock
from findimage.stores.base import PassLease

from .retry import retry_while_unavailable

__all__ = ["AlreadyRunning", "ProcessLock", "pass_guard", "pass_lock", "running_pass", "scheduler_lock"]
log = logging.getLogger(__name__)


@contextlib.contextmanager
def pass_guard(settings: Settings) -> Iterator[PassLease | None]:
    """Hold everything that keeps a second pass out: the data folder's lock, and the index's lease when the
    store has one (findimage.backends.indexing_lease). Yields the lease (or None), which the pass watches
    for a takeover; AlreadyRunning (naming the holder) when another pass has either."""
    with pass_lock(settings.data_dir):
        lease = indexing_lease(settings)
        if lease is None:
            yield None
            return
        try:
            try:
                # A cluster that answers but is still starting (shards recovering, 503) gets a minute; one
                # that cannot be reached at all is reported at once.
                retry_while_busy(lease.take, give_up_after=STARTING_SECONDS)
            except LeaseHeld as exc:
                raise AlreadyRunning(str(exc)) from None
            try:
                yield lease
            finally:
                lease.release()
        finally:
            lease.close()


STARTING_SECONDS = 60.0


T = TypeVar("T")


def retry_while_busy(operation: Callable[[], T], give_up_after: float, pause: float = 1.0,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], object] = time.sleep) -> T:
    """Run `operation`, repeating it every `pause` s while Elasticsearch answers that it is busy, until
    `give_up_after`; one that cannot be reached at all is reported at once."""
    return retry_while_unavailable(operation, give_up_after, first_wait=pause, max_wait=pause, clock=clock,
                                   sleep=sleep, retry_on=BackendBusy)


def taken_over(lease: PassLease | None) -> Callable[[], bool]:
    """Whether another pass took over `lease` (this one stalled past the expiry); never without a lease."""
    return lease.lost.is_set if lease is not None else (lambda: False)


def running_pass(settings: Settings) -> str:
    """For `findimage status`: who is indexing right now, if anyone."""
    lease = indexing_lease(settings)
    if lease is not None:
        try:
            holder = lease.holder()
        finally:
            lease.close()
        if holder is None:
            return "none"
        until = time.strftime("%H:%M:%S", time.localtime(holder.expires_at))
        return f"running {holder.describe()}, lease renewed until {until}"
    locked_by = pass_lock(settings.data_dir).holder()
    return f"running ({locked_by})" if locked_by else "none"

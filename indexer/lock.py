"""One indexing pass at a time: a lock file per data directory (findimage.locks), and with Elasticsearch
also a lease in the index itself (an indexing lease, from findimage.backends), since indexers with other data folders or
on other machines write the same index and never see each other's lock files. What a pass holds while it
runs, its store opened for writing included, is taken here, once, in one order (pass_guard)."""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from findimage.backends import indexing_lease, open_store
from findimage.config import Settings
from findimage.errors import BackendBusy, LeaseHeld
from findimage.locks import AlreadyRunning, ProcessLock, pass_lock, scheduler_lock
from findimage.stores.base import PassLease, Store

from .retry import Backoff, retry_while_unavailable

__all__ = ["AlreadyRunning", "HeldPass", "ProcessLock", "pass_guard", "pass_lock", "running_pass", "scheduler_lock"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldPass:
    """What a pass holds while it runs: the store it writes, opened for writing, and the index's lease (None
    where the data folder's lock is enough)."""

    store: Store
    lease: PassLease | None = None

    def superseded(self) -> bool:
        """Whether another pass took the lease over (this one stalled past the expiry); never without a lease."""
        return self.lease is not None and self.lease.lost.is_set()


@contextlib.contextmanager
def pass_guard(settings: Settings) -> Iterator[HeldPass]:
    """Hold everything that keeps a second pass out, with the store the pass writes, taken in this order: the
    data folder's lock; the store, opened for writing once (credentials that may not index fail here, in the
    store's one sentence, not as a lease problem); the index's lease where the store has one
    (findimage.backends.indexing_lease). AlreadyRunning (naming the holder) when another pass has either."""
    # A cluster that answers but is still starting (shards recovering, 503) gets a minute, for the store and the
    # lease together; one that cannot be reached at all is reported at once.
    starting_until = time.monotonic() + STARTING_SECONDS
    with pass_lock(settings.data_dir):
        store = retry_while_busy(lambda: open_store(settings, writer=True), give_up_after=STARTING_SECONDS)
        try:
            with _leased(settings, starting_until) as lease:
                yield HeldPass(store, lease)
        finally:
            store.close()


@contextlib.contextmanager
def _leased(settings: Settings, starting_until: float) -> Iterator[PassLease | None]:
    """The index's lease, taken (None where the store has none); AlreadyRunning while another pass holds it."""
    lease = indexing_lease(settings)
    if lease is None:
        yield None
        return
    try:
        try:
            retry_while_busy(lease.take, give_up_after=max(0.0, starting_until - time.monotonic()))
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
    return retry_while_unavailable(operation, give_up_after, Backoff(pause, pause, BackendBusy), clock, sleep)


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

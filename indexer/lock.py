"""One indexing pass at a time: a lock file per data directory, and with Elasticsearch also a lease in
the index itself (findimage.es_lease), since indexers with other data folders or on other machines
write the same index and never see each other's lock files."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from .retry import retry_while_unavailable

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    pass


class ProcessLock:
    """An exclusive flock; the kernel releases it when the holder exits, even on kill -9."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "ProcessLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyRunning(f"Another {self.what} is already running ({holder}); not starting a second one.")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> str | None:
        """Who holds the lock now ("pid N, since ..."), or None; the lock is not taken."""
        if not self.path.is_file():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProcessLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def pass_lock(data_dir: str | Path) -> ProcessLock:
    return ProcessLock(Path(data_dir) / "index-pass.lock", "indexing pass")


def scheduler_lock(data_dir: str | Path) -> ProcessLock:
    return ProcessLock(Path(data_dir) / "scheduler.lock", "scheduled indexer")


def es_lease(settings):
    from findimage.es_client import make_client
    from findimage.es_lease import IndexingLease

    return IndexingLease(make_client(settings), settings.index_name, settings.lease_seconds)


@contextlib.contextmanager
def pass_guard(settings):
    """Hold everything that keeps a second pass out: the data folder's lock, and the index's lease when the
    store is Elasticsearch. AlreadyRunning (naming the holder) when another pass has either."""
    with pass_lock(settings.data_dir):
        if not settings.uses_elasticsearch:
            yield
            return
        from elasticsearch import ApiError, TransportError

        from findimage.es_client import access_denied, unavailable_error
        from findimage.es_lease import LeaseHeld
        from findimage.es_store import ElasticsearchStore

        lease = es_lease(settings)

        def take_lease() -> None:
            # Credentials that may not index fail here in the store's one sentence, not as a lease problem.
            ElasticsearchStore.from_settings(settings, client=lease.client, writer=True)
            try:
                lease.acquire()
            except LeaseHeld as exc:
                raise AlreadyRunning(str(exc)) from None
            except (ApiError, TransportError) as exc:
                if isinstance(exc, ApiError) and exc.meta.status == 403:  # a key made before the lease existed
                    raise access_denied(settings.elasticsearch_url,
                                        what=f"hold the indexing lease in {lease.index}") from None
                raise unavailable_error(settings.elasticsearch_url, exc) from None

        try:
            # A cluster that answers but is still starting (shards recovering, 503) gets a minute; one that
            # cannot be reached at all is reported at once.
            retry_while_busy(take_lease, give_up_after=STARTING_SECONDS)
            _held.lease = lease
            try:
                yield
            finally:
                _held.lease = None
                lease.release()
        finally:
            lease.client.close()


_held = threading.local()
STARTING_SECONDS = 60.0


def retry_while_busy(operation, give_up_after: float, pause: float = 1.0, clock=time.monotonic, sleep=time.sleep):
    """Run `operation`, repeating it every `pause` s while Elasticsearch answers that it is busy, until
    `give_up_after`; one that cannot be reached at all is reported at once."""
    from findimage.errors import BackendBusy

    return retry_while_unavailable(operation, give_up_after, first_wait=pause, max_wait=pause, clock=clock,
                                   sleep=sleep, retry_on=BackendBusy)


def lease_lost() -> bool:
    """Whether another pass took over the lease this thread's pass holds (it stalled past the expiry)."""
    lease = getattr(_held, "lease", None)
    return lease is not None and lease.lost.is_set()


def running_pass(settings) -> str:
    """For `findimage status`: who is indexing right now, if anyone."""
    if settings.uses_elasticsearch:
        lease = es_lease(settings)
        try:
            holder = lease.holder()
        finally:
            lease.client.close()
        if holder is None:
            return "none"
        until = time.strftime("%H:%M:%S", time.localtime(holder.expires_at))
        return f"running {holder.describe()}, lease renewed until {until}"
    holder = pass_lock(settings.data_dir).holder()
    return f"running ({holder})" if holder else "none"

"""The indexing lease: one document in `<alias>-lease`, so one indexing pass runs at a time on an index,
whichever machine or data folder it starts from. LeaseDocument is that document as any holder takes it (a
pass, a restore of snapshots); ElasticsearchPassLease is a pass's lease (findimage.stores.base.PassLease).

A file lock only covers the processes that share its data folder; with Elasticsearch two indexers can
run anywhere. The lease document (id `index-pass`) names its holder (owner id, host, pid, start) and an
expiry that a background thread renews every third of the lease time. It is taken with `create` (only
one of several starters gets it) and renewed, taken over or released with `if_seq_no`/`if_primary_term`
(only when nobody changed it since it was read). A holder killed with -9 stops renewing: the next pass
takes its lease over once it has expired, without anyone removing it by hand; on the holder's own
machine (same boot and pid namespace, so its pid means the same process) at once, since that pid is
seen to be gone.

Expiry compares the holder's clock with the taker's: machines are assumed to keep time with NTP (a
lease of 60 s tolerates seconds of drift).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from elastic_transport import ObjectApiResponse
from elasticsearch import ApiError, BadRequestError, ConflictError, Elasticsearch, NotFoundError, TransportError

from findimage.config import ElasticsearchSettings
from findimage.errors import LeaseHeld
from findimage.stores.elasticsearch.client import access_denied, error_type, make_client, unavailable_error
from findimage.stores.elasticsearch.names import lease_index

log = logging.getLogger(__name__)
LEASE_ID = "index-pass"




def process_scope() -> str:
    """Where a pid names one process: this boot of this kernel, this pid namespace (container); "" if unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class ProcessId:
    """Which process takes a lease: its host, its pid, and where that pid names one process (process_scope)."""

    host: str
    pid: int
    scope: str = ""

    @classmethod
    def this(cls) -> ProcessId:
        return cls(socket.gethostname(), os.getpid(), process_scope())


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    started_at: float
    expires_at: float
    scope: str = ""

    @classmethod
    def from_source(cls, source: dict[str, Any]) -> Holder:
        return cls(source["owner"], source["host"], int(source["pid"]), float(source["started_at"]),
                   float(source["expires_at"]), source.get("scope", ""))

    def describe(self) -> str:
        return f"on host {self.host} (pid {self.pid}, since {_when(self.started_at)})"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


class LeaseDocument:
    """The lease document (id `index-pass`), taken, renewed in the background, taken over and released on the
    caller's client, as `process` (this one by default)."""

    def __init__(self, client: Elasticsearch, alias: str, seconds: float = 60.0, *,
                 clock: Callable[[], float] = time.time, process: ProcessId | None = None):
        self.client = client
        self.index = lease_index(alias)
        self.seconds = seconds
        self._clock = clock
        self.owner = uuid.uuid4().hex
        self.process = process or ProcessId.this()
        self._version: tuple[int, int] | None = None  # (seq_no, primary_term) of our last write
        self._started_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()  # set when another pass took the lease over (we stalled past expiry)

    # ---- reading --------------------------------------------------------------------------------
    def holder(self) -> Holder | None:
        """The holder of a lease that has not expired, or None."""
        try:
            found = self.client.get(index=self.index, id=LEASE_ID)
        except NotFoundError:  # no lease, or no lease index yet
            return None
        holder = Holder.from_source(found["_source"])
        return holder if holder.expires_at > self._clock() else None

    # ---- taking, renewing, giving back ------------------------------------------------------------
    def acquire(self) -> LeaseDocument:
        """Take the lease, or raise LeaseHeld naming the pass that holds it."""
        self._ensure_index()
        self._started_at = self._clock()
        try:
            written = self.client.create(index=self.index, id=LEASE_ID, document=self._source(), refresh=False)
        except ConflictError:
            written = self._take_over()
        self._version = (written["_seq_no"], written["_primary_term"])
        log.info("took the indexing lease in %s (%g s, renewed every %g s)", self.index, self.seconds,
                 self.seconds / 3)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="findimage-lease", daemon=True)
        self._thread.start()
        return self

    def _take_over(self) -> ObjectApiResponse[Any]:
        try:
            found = self.client.get(index=self.index, id=LEASE_ID)
        except NotFoundError:  # released between our create and this read: try once more
            try:
                return self.client.create(index=self.index, id=LEASE_ID, document=self._source())
            except ConflictError:
                found = self.client.get(index=self.index, id=LEASE_ID)
        holder = Holder.from_source(found["_source"])
        if holder.expires_at > self._clock() and not self._died_here(holder):
            raise LeaseHeld(f"Another indexing pass is running {holder.describe()}; not starting a second one.")
        try:
            written = self.client.index(index=self.index, id=LEASE_ID, document=self._source(),
                                        if_seq_no=found["_seq_no"], if_primary_term=found["_primary_term"])
        except ConflictError:  # someone else took it over first
            now = self.client.get(index=self.index, id=LEASE_ID)
            raise LeaseHeld(f"Another indexing pass is running {Holder.from_source(now['_source']).describe()}; "
                            "not starting a second one.") from None
        log.warning("took over the indexing lease of the pass %s, which %s", holder.describe(),
                    "is no longer running" if self._died_here(holder)
                    else f"stopped renewing it at {_when(holder.expires_at - self.seconds)}")
        return written

    def _died_here(self, holder: Holder) -> bool:
        """The holder ran in this very scope and its process is gone (killed): no need to wait for expiry."""
        scope = self.process.scope
        return bool(scope) and holder.scope == scope and _pid_gone(holder.pid)

    def renew(self) -> bool:
        """Extend the lease; False if another pass has taken it over (or it was never taken)."""
        if self._version is None:
            return False
        seq_no, primary_term = self._version
        try:
            written = self.client.index(index=self.index, id=LEASE_ID, document=self._source(),
                                        if_seq_no=seq_no, if_primary_term=primary_term)
        except (ConflictError, NotFoundError):
            return False
        self._version = (written["_seq_no"], written["_primary_term"])
        return True

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.renew():
                    self.lost.set()
                    log.error("the indexing lease in %s was taken over by another pass; this pass's remaining "
                              "writes overlap with it (they are idempotent)", self.index)
                    return
            except (ApiError, TransportError) as exc:  # keep trying: the lease lasts `seconds`
                log.warning("could not renew the indexing lease: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._version is None or self.lost.is_set():
            return
        seq_no, primary_term = self._version
        try:
            self.client.delete(index=self.index, id=LEASE_ID, if_seq_no=seq_no, if_primary_term=primary_term)
        except (ConflictError, NotFoundError):
            pass
        except (ApiError, TransportError) as exc:  # it expires by itself
            log.warning("could not release the indexing lease (it lapses in %g s): %s", self.seconds, exc)
        self._version = None

    def __enter__(self) -> LeaseDocument:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _source(self) -> dict[str, Any]:
        now = self._clock()
        process = self.process
        return {"owner": self.owner, "host": process.host, "pid": process.pid, "scope": process.scope,
                "started_at": self._started_at, "renewed_at": now, "expires_at": now + self.seconds}

    def _ensure_index(self) -> None:
        try:
            self.client.indices.create(
                index=self.index,
                mappings={"dynamic": "strict", "properties": {
                    "owner": {"type": "keyword"}, "host": {"type": "keyword"}, "pid": {"type": "long"},
                    "scope": {"type": "keyword"},
                    "started_at": {"type": "double"}, "renewed_at": {"type": "double"},
                    "expires_at": {"type": "double"}}},
                settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
        except BadRequestError as exc:
            if error_type(exc) != "resource_already_exists_exception":
                raise


class ElasticsearchPassLease:
    """A pass's lease (findimage.stores.base.PassLease): the lease document on a client of its own, which
    closes with it, and its failures in one sentence. The pass opens its store for writing before it takes
    the lease (indexer.lock.pass_guard): credentials that may not index fail there, in the store's sentence."""

    def __init__(self, settings: ElasticsearchSettings):
        self.url = settings.elasticsearch_url
        self.lease = LeaseDocument(make_client(settings), settings.index_name, settings.lease_seconds)

    @property
    def lost(self) -> threading.Event:
        return self.lease.lost

    def take(self) -> None:
        """LeaseHeld while another pass holds it; AccessDenied or BackendUnavailable in one sentence."""
        try:
            self.lease.acquire()
        except LeaseHeld:
            raise
        except (ApiError, TransportError) as exc:
            if isinstance(exc, ApiError) and exc.meta.status == 403:  # a key made before the lease existed
                raise access_denied(self.url, what=f"hold the indexing lease in {self.lease.index}") from None
            raise unavailable_error(self.url, exc) from None

    def release(self) -> None:
        self.lease.release()

    def holder(self) -> Holder | None:
        return self.lease.holder()

    def close(self) -> None:
        self.lease.client.close()

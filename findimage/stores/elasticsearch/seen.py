"""Seen keys shared by every bot replica: an Elasticsearch index `<alias>-seen`, written create-only.

Slack delivers an event to whichever replica it reaches, and retries (or a second connection in Socket
Mode) may reach another one; only a key stored where every replica looks makes "answer once" hold.

One document per key, id = the key, `{"seen_at": epoch millis}`. `create` is atomic per id, so of two
replicas asking at once exactly one gets 201 and answers; the other gets 409 and stays quiet. A key is
remembered for SEEN_TTL_SECONDS (an hour, like the in-process SeenRecently): a 409 on a document older
than that re-takes it with optimistic concurrency (`if_seq_no`/`if_primary_term`), so the answer does
not depend on when old documents are purged. Purging is a `delete_by_query` of documents older than
the TTL, started (not awaited) by at most one call per PURGE_EVERY_SECONDS per process: the index
stays at about an hour of keys. One index with a date field instead of daily indices: a key seen at
23:59 must still be found at 00:01, which daily indices can only do with a second lookup.

When Elasticsearch cannot answer, that call falls back to the process's own memory and says so in the
log: answering a retry twice is better than not answering at all.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from elasticsearch import ApiError, BadRequestError, ConflictError, Elasticsearch, NotFoundError, TransportError

from findimage.config import public_url
from findimage.stores.base import SEEN_TTL_SECONDS, SeenKeys
from findimage.stores.elasticsearch.client import error_type
from findimage.stores.elasticsearch.names import seen_index

log = logging.getLogger(__name__)

# Slack waits 3 s for an ack; a seen-key lookup must never be what makes an answer late.
REQUEST_TIMEOUT_SECONDS = 2.0
MAX_ID_BYTES = 256  # Elasticsearch allows 512; longer keys are hashed
PURGE_EVERY_SECONDS = 600.0




def doc_id(key: str) -> str:
    if len(key.encode()) <= MAX_ID_BYTES:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class SharedSeen:
    """`first_time(key)` True exactly once per key and TTL across every process using the same index."""

    def __init__(self, client: Elasticsearch, alias: str, fallback: SeenKeys, *, url: str | None = "",
                 clock: Callable[[], float] = time.time):
        self.client = client.options(request_timeout=REQUEST_TIMEOUT_SECONDS, max_retries=0)
        self.index = seen_index(alias)
        self.url = public_url(url)
        self.fallback = fallback  # the in-process SeenRecently, used while Elasticsearch is unreachable
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = False
        self._next_purge = 0.0

    def first_time(self, key: str) -> bool:
        try:
            return self._first_time(key)
        except (ApiError, TransportError) as exc:
            log.warning("seen keys in Elasticsearch at %s unavailable (%s); using this process's memory for %s, "
                        "so another replica may answer it too", self.url, _reason(exc), key)
            return self.fallback.first_time(key)

    def _first_time(self, key: str) -> bool:
        self._ensure_index()
        now = self._clock()
        self._maybe_purge(now)
        _id, source = doc_id(key), {"seen_at": int(now * 1000)}
        try:
            self.client.create(index=self.index, id=_id, document=source)
            self.fallback.first_time(key)  # so a later fallback for this key still knows it was answered
            return True
        except ConflictError:
            pass
        try:
            found = self.client.get(index=self.index, id=_id)
        except NotFoundError:  # purged between the two requests: older than the TTL
            return self._take_expired(_id, source, key)
        if now * 1000 - found["_source"]["seen_at"] < SEEN_TTL_SECONDS * 1000:
            return False
        return self._take_expired(_id, source, key, found["_seq_no"], found["_primary_term"])

    def _take_expired(self, _id: str, source: dict[str, Any], key: str, seq_no: int | None = None,
                      primary_term: int | None = None) -> bool:
        """Whoever re-writes an expired key first answers; everyone else conflicts."""
        try:
            if seq_no is None:
                self.client.create(index=self.index, id=_id, document=source)
            else:
                self.client.index(index=self.index, id=_id, document=source, if_seq_no=seq_no,
                                  if_primary_term=primary_term)
        except ConflictError:
            return False
        self.fallback.first_time(key)
        return True

    def _ensure_index(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                self.client.indices.create(
                    index=self.index,
                    mappings={"dynamic": "strict", "properties": {"seen_at": {"type": "date",
                                                                              "format": "epoch_millis"}}},
                    settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
            except BadRequestError as exc:
                if error_type(exc) != "resource_already_exists_exception":
                    raise
            self._ready = True

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_EVERY_SECONDS
        try:
            self.purge(now)
        except (ApiError, TransportError) as exc:  # the keys still expire by age; the next purge retries
            log.warning("could not purge old seen keys in %s: %s", self.index, _reason(exc))

    def purge(self, now: float | None = None, wait: bool = False) -> None:
        """Delete keys older than the TTL; in the background unless `wait` (tests, operators)."""
        cutoff = int(((self._clock() if now is None else now) - SEEN_TTL_SECONDS) * 1000)
        if wait:  # keys written within the last second are not searchable before a refresh
            self.client.indices.refresh(index=self.index)
        self.client.delete_by_query(index=self.index, query={"range": {"seen_at": {"lt": cutoff}}},
                                    conflicts="proceed", wait_for_completion=wait, refresh=wait)

    def forget_all(self) -> None:
        """Every key, for every replica at once; this process's fallback memory too."""
        self.fallback.forget_all()
        if self.client.indices.exists(index=self.index):
            self.client.indices.refresh(index=self.index)  # keys written a moment ago too
            self.client.delete_by_query(index=self.index, query={"match_all": {}}, conflicts="proceed",
                                        refresh=True, wait_for_completion=True)

    def count(self) -> int:
        self.client.indices.refresh(index=self.index)
        return int(self.client.count(index=self.index)["count"])


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.meta.status} {exc.message}"
    return type(exc).__name__

"""Remember what was already answered, so Slack's retries and re-deliveries are answered only once.

Two implementations of `first_time(key) -> bool`, chosen by `seen_keys(settings)`: with the embedded
store, this process's memory (SeenRecently: one bot process is all the embedded store supports); with
Elasticsearch, an index every replica shares (SharedSeen in the Elasticsearch store's package), since
Slack's retry of an event may reach another replica than the first delivery. Slack retries within about
five minutes, so an hour of memory is plenty.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from findimage import backends
from findimage.config import Settings
from findimage.stores.base import SEEN_TTL_SECONDS, SeenKeys


class SeenRecently:
    def __init__(self, ttl_seconds: float = SEEN_TTL_SECONDS, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> first seen, oldest first
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """True exactly once per key within the TTL, also when several threads ask at the same moment."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True

    def forget_all(self) -> None:
        with self._lock:
            self._seen.clear()

    def _forget_old(self, now: float) -> None:
        while self._seen:
            key, seen_at = next(iter(self._seen.items()))
            if now - seen_at < self.ttl_seconds and len(self._seen) < self.max_entries:
                return
            self._seen.popitem(last=False)


def seen_keys(settings: Settings) -> SeenKeys:
    """The de-duplication the configured store calls for (findimage.backends): shared through
    Elasticsearch, else in memory."""
    return backends.seen_keys(settings, SeenRecently())

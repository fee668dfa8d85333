"""Rendered previews for image links: cached by content hash, made by a few threads at a time.

Slack's image proxy and every client that opens a message fetch the same previews, and gunicorn's
threads are shared with Slack's events: without a bound, a burst of image fetches would keep all of
them decoding JPEGs while commands wait for their ack. So at most CONCURRENT_RENDERS renders run, and
a request that finds every slot taken is refused at once (RenderBusy) instead of holding its thread
while it waits for one.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from findimage.imaging import thumbnail_jpeg

CACHE_ENTRIES = 64  # ~100 KB per 1024-px preview: a few MB
CACHE_BYTES = 32 * 1024 * 1024
CONCURRENT_RENDERS = 2


class RenderBusy(Exception):
    """Every render slot is taken."""


class Previews:
    def __init__(self, render: Callable[[bytes], bytes] = thumbnail_jpeg, *, entries: int = CACHE_ENTRIES,
                 max_bytes: int = CACHE_BYTES, concurrent: int = CONCURRENT_RENDERS):
        self._render = render
        self._entries = entries
        self._max_bytes = max_bytes
        self._concurrent = concurrent
        self._slots = threading.BoundedSemaphore(concurrent)
        self._cache: OrderedDict[str, bytes] = OrderedDict()  # content sha256 -> JPEG, least recent first
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def get(self, sha256: str, read: Callable[[], bytes], name: str = "image") -> bytes:
        """The preview of the file `read` returns (read inside a render slot, so at most `concurrent`
        files are in memory), whose indexed content hash is `sha256`; ImageError or RenderBusy otherwise."""
        cached = self._lookup(sha256)
        if cached is not None:
            return cached
        if not self._slots.acquire(blocking=False):
            raise RenderBusy(f"{name}: all {self._concurrent} render slots busy")
        try:
            cached = self._lookup(sha256)  # another request may have finished it in the meantime
            if cached is not None:
                return cached
            data = self._render(read())
        finally:
            self._slots.release()
        self._store(sha256, data)
        return data

    def _lookup(self, sha256: str) -> bytes | None:
        with self._lock:
            data = self._cache.get(sha256)
            if data is not None:
                self._cache.move_to_end(sha256)
            return data

    def _store(self, sha256: str, data: bytes) -> None:
        if len(data) > self._max_bytes:
            return
        with self._lock:
            if sha256 in self._cache:
                return
            self._cache[sha256] = data
            self._cached_bytes += len(data)
            while len(self._cache) > self._entries or self._cached_bytes > self._max_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= len(evicted)

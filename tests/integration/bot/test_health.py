"""/healthz as the internet may use it: it answers at once from the last count while the store is slow or
hanging, and asks the store once at a time however many health checks arrive."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bot_support import FakeClock, serve_bot

from bot.wsgi import HEALTH_TIMEOUT_SECONDS, HEALTH_TTL_SECONDS
from findimage import __version__
from findimage.backends import open_store
from findimage.search import Searcher


class HeldCount:
    """The real store, whose count() the test can hold (it blocks until let go), counting the calls."""

    def __init__(self, store):
        self._store = store
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def count(self):
        with self._lock:
            self.calls += 1
        assert self.gate.wait(60), "the test let the count go"
        return self._store.count()

    def __getattr__(self, name):
        return getattr(self._store, name)


def health(base_url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=20) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


OK = (200, {"status": "ok", "version": __version__, "documents": 7, "queued": 0})


def test_health_checks_answer_at_once_while_the_store_count_is_held_and_only_one_count_runs(indexed, emu):
    store, clock = HeldCount(open_store(indexed)), FakeClock()
    with serve_bot(indexed, Searcher(indexed, store=store), health_clock=clock) as bot:
        try:
            first = health(bot.base_url)
            assert (first, store.calls) == (OK, 1), "counted once"
            store.gate.clear()  # from now on the store's count does not come back
            clock.advance(HEALTH_TTL_SECONDS)
            with ThreadPoolExecutor(8) as pool:
                # Each answer arrives while the count is held: none of them waited for the store.
                stale = list(pool.map(lambda _: health(bot.base_url), range(8)))
            emu.wait_for(lambda: store.calls == 2, 15, "the stale count's refresh")
            clock.advance(HEALTH_TIMEOUT_SECONDS)
            hanging = [health(bot.base_url) for _ in range(3)]
            calls_while_held = store.calls
        finally:
            store.gate.set()
        emu.wait_for(lambda: health(bot.base_url) == OK, 15, "the count back after the store answers")
        calls_after = store.calls

    assert stale == [OK] * 8, "the last count, at once"
    assert hanging == [(503, {"status": "unavailable", "version": __version__, "queued": 0})] * 3, \
        "a count that hangs is a store down"
    assert calls_while_held == 2 and calls_after == 2, "one refresh at a time, however many checks"

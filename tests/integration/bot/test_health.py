"""/readyz as the internet may use it: it answers at once from the last probe while the store is slow or
hanging, and asks the store once at a time however many readiness checks arrive; /healthz never asks it."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bot_support import FakeClock, serve_bot
from scraping import get

from findimage import __version__
from findimage.backends import open_store
from findimage.observability import READY_TIMEOUT_SECONDS, READY_TTL_SECONDS
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


READY = (200, "Ready: 7 documents in the archive.\n")
ALIVE = (200, {"status": "ok", "version": __version__, "queued": 0})


def test_readiness_checks_answer_at_once_while_the_store_count_is_held_and_only_one_count_runs(indexed, emu):
    store, clock = HeldCount(open_store(indexed)), FakeClock()
    with serve_bot(indexed, Searcher(indexed, store=store), health_clock=clock) as bot:
        try:
            first = get(bot.base_url, "/readyz")
            assert (first, store.calls) == (READY, 1), "counted once"
            store.gate.clear()  # from now on the store's count does not come back
            clock.advance(READY_TTL_SECONDS)
            with ThreadPoolExecutor(8) as pool:
                # Each answer arrives while the count is held: none of them waited for the store.
                stale = list(pool.map(lambda _: get(bot.base_url, "/readyz"), range(8)))
            emu.wait_for(lambda: store.calls == 2, 15, "the stale probe's refresh")
            clock.advance(READY_TIMEOUT_SECONDS)
            hanging = [get(bot.base_url, "/readyz") for _ in range(3)]
            alive = [get(bot.base_url, "/healthz") for _ in range(3)]
            calls_while_held = store.calls
        finally:
            store.gate.set()
        emu.wait_for(lambda: get(bot.base_url, "/readyz") == READY, 15, "ready again after the store answers")
        calls_after = store.calls

    assert stale == [READY] * 8, "the last probe's answer, at once"
    assert hanging == [(503, "Not ready: the store or the archive folder did not answer within 5 seconds.\n")] * 3, \
        "a count that hangs is a store down"
    assert alive == [ALIVE] * 3, "alive all along"
    assert calls_while_held == 2 and calls_after == 2, "one refresh at a time, however many checks"

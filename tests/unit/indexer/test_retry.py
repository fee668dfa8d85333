"""A pass waits for a store that went away, with growing pauses, and gives up after its time."""
from __future__ import annotations

import pytest

from findimage.errors import BackendUnavailable
from indexer.retry import retry_while_unavailable


class Clock:
    def __init__(self):
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_the_store_coming_back_ends_the_wait_with_its_answer():
    clock, calls = Clock(), []

    def flaky():
        calls.append(clock.now)
        if len(calls) < 4:
            raise BackendUnavailable("Elasticsearch at http://es:9200 is not reachable (connection refused).")
        return "written"

    assert retry_while_unavailable(flaky, clock=clock, sleep=clock.sleep) == "written"
    assert clock.pauses == [1.0, 2.0, 4.0], "pauses double"


def test_the_wait_gives_up_after_its_time_with_the_stores_sentence():
    clock = Clock()

    def down():
        raise BackendUnavailable("Elasticsearch at http://es:9200 is not reachable (connection refused).")

    with pytest.raises(BackendUnavailable, match="not reachable"):
        retry_while_unavailable(down, give_up_after=60, clock=clock, sleep=clock.sleep)
    assert clock.pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 5.0], "capped at 10 s, never past the deadline"
    assert clock.now == 60.0


def test_taking_the_lease_waits_for_a_starting_cluster_but_not_for_a_missing_one():
    from findimage.errors import BackendBusy
    from indexer.lock import retry_while_busy

    clock, calls = Clock(), []

    def starting():
        calls.append(clock.now)
        if len(calls) < 3:
            raise BackendBusy("Elasticsearch at http://es:9200 is not ready to serve requests (503, ...).")
        return "leased"

    assert retry_while_busy(starting, 60, clock=clock, sleep=clock.sleep) == "leased"
    assert calls == [0.0, 1.0, 2.0]

    def unreachable():
        raise BackendUnavailable("Elasticsearch at http://es:9200 is not reachable (connection refused).")

    with pytest.raises(BackendUnavailable, match="not reachable"):
        retry_while_busy(unreachable, 60, clock=clock, sleep=clock.sleep)
    assert clock.now == 2.0, "no wait for a server that is not there"

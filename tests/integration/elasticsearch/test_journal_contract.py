"""The channel registry's journal, on both stores: Slack events kept until they are applied, taken by one
worker at a time, and records of deleted files that keep a late posting from being remembered."""
from __future__ import annotations

from es_support import both_stores

from findimage.backends import open_remembered
from findimage.stores.base import LIFECYCLE, REMEMBER, Pending


def entry(key: str, lane: str = LIFECYCLE, received: float = 100.0) -> Pending:
    return Pending(key, lane, {"type": "file_deleted", "file_id": f"F{key}"}, received)


@both_stores
def test_kept_events_wait_until_settled_and_outlive_the_process(settings):
    registry = open_remembered(settings).registry
    registry.keep([entry("Ev2", received=102.0), entry("Ev1", received=101.0), entry("Ev3", REMEMBER)])
    registry.keep([entry("Ev1", received=999.0)])  # Slack's re-delivery of an event kept already
    assert registry.backlog() == {LIFECYCLE: 2, REMEMBER: 1}
    registry.close()

    again = open_remembered(settings).registry  # a restart
    taken = again.take(LIFECYCLE, 10, "host-a", now=200.0, hold_seconds=60)
    assert [(e.id, e.event["file_id"], e.attempts, e.received) for e in taken] == [
        ("Ev1", "FEv1", 1, 101.0), ("Ev2", "FEv2", 1, 102.0)]  # oldest first; the re-delivery changed nothing
    again.settle(["Ev1"])
    assert again.backlog() == {LIFECYCLE: 1, REMEMBER: 1}
    again.settle(["Ev2", "Ev3", "never kept"])
    assert again.backlog() == {}


@both_stores
def test_an_entry_held_by_one_worker_is_not_taken_by_another_until_its_hold_lapses(settings):
    registry = open_remembered(settings).registry
    registry.keep([entry("Ev1", REMEMBER)])
    assert [e.id for e in registry.take(REMEMBER, 1, "host-a", now=100.0, hold_seconds=60)] == ["Ev1"]
    assert registry.take(REMEMBER, 1, "host-b", now=120.0, hold_seconds=60) == []
    # host-a restarted: it takes back its own at once
    [mine] = registry.take(REMEMBER, 1, "host-a", now=121.0, hold_seconds=60)
    assert mine.attempts == 2
    # host-a gone for good: after the hold, another worker takes it over
    [taken] = registry.take(REMEMBER, 1, "host-b", now=200.0, hold_seconds=60)
    assert (taken.id, taken.worker, taken.attempts) == ("Ev1", "host-b", 3)
    assert registry.take(LIFECYCLE, 10, "host-b", now=500.0, hold_seconds=60) == []  # lanes apart


@both_stores
def test_a_deleted_file_is_recorded_for_a_while(settings):
    registry = open_remembered(settings).registry
    registry.mark_gone(["F1", "C0TEAM/F2"], now=1000.0, keep_seconds=100.0)
    assert registry.gone(["F1", "F2", "C0TEAM/F2", "F3"], now=1050.0) == {"F1", "C0TEAM/F2"}
    assert registry.gone(["F1"], now=1101.0) == set()  # lapsed
    registry.mark_gone(["F3"], now=2000.0, keep_seconds=100.0)
    assert registry.gone(["F1", "F3"], now=2001.0) == {"F3"}

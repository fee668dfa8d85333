"""The bot's in-memory de-duplication (bot.dedupe.SeenRecently), with a clock the test moves."""
from __future__ import annotations

import threading

from bot_support import FakeClock

from bot.dedupe import SEEN_TTL_SECONDS, SeenRecently


def test_a_key_is_new_once_until_the_ttl_has_passed_then_new_once_again():
    clock = FakeClock(1000.0)
    seen = SeenRecently(ttl_seconds=60, clock=clock)

    assert seen.first_time("event:Ev1") is True
    assert seen.first_time("event:Ev1") is False
    assert seen.first_time("event:Ev2") is True, "other keys are their own"
    clock.advance(59.9)
    assert seen.first_time("event:Ev1") is False, "still remembered just before the TTL"
    clock.advance(0.1)
    assert seen.first_time("event:Ev1") is True, "forgotten at the TTL: answered again"
    assert seen.first_time("event:Ev1") is False, "and remembered again from then on"


def test_the_default_memory_lasts_an_hour():
    clock = FakeClock(0.0)
    seen = SeenRecently(clock=clock)
    assert SEEN_TTL_SECONDS == 3600 and seen.first_time("k")
    clock.advance(3599)
    assert not seen.first_time("k")
    clock.advance(1)
    assert seen.first_time("k")


def test_the_oldest_keys_are_forgotten_first_when_the_memory_is_full():
    clock = FakeClock(0.0)
    seen = SeenRecently(ttl_seconds=3600, max_entries=3, clock=clock)
    for key in "abc":
        assert seen.first_time(key)
        clock.advance(1)

    assert seen.first_time("d"), "a fourth key pushes out the oldest"
    assert seen.first_time("a"), "a was forgotten"
    assert not seen.first_time("d") and not seen.first_time("a")


def test_of_many_threads_asking_at_once_exactly_one_gets_true():
    seen = SeenRecently()
    start = threading.Barrier(16)
    answers = []

    def ask():
        start.wait()
        answers.append(seen.first_time("file:C0:F1"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 15 + [True]


def test_an_uninstall_forgets_every_key():
    seen = SeenRecently()
    assert seen.first_time("event:Ev1") and seen.first_time("file:C1:F1")
    seen.forget_all()
    assert seen.first_time("event:Ev1") is True and seen.first_time("file:C1:F1") is True

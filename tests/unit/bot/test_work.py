"""The answers' queue: a place reserved before an ack is given back when no job was put in it."""
from __future__ import annotations

import threading

import pytest

from bot.work import WorkPool


def test_a_place_reserved_for_an_ack_that_failed_is_given_back():
    pool = WorkPool(workers=1, max_queued=1)
    try:
        with pytest.raises(ConnectionError), pool.reserve() as ticket:
            assert pool.reserve() is None, "the one place is taken"
            raise ConnectionError("the ack could not be sent")
        assert ticket is not None and pool.pending == 0
        done = threading.Event()
        assert pool.submit(done.set), "the place is free again"
        assert done.wait(5)
    finally:
        pool.shutdown()


def test_a_place_given_its_job_is_held_until_the_job_ends():
    pool = WorkPool(workers=1, max_queued=1)
    release = threading.Event()
    try:
        ticket = pool.reserve()
        with ticket:
            ticket.submit(release.wait, 5)
        assert pool.pending == 1 and pool.reserve() is None, "leaving the block does not free a used place"
        release.set()
        pool.shutdown(wait=True)
        assert pool.pending == 0
    finally:
        release.set()
        pool.shutdown()

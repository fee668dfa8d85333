"""A bounded answer queue: past FINDIMAGE_MAX_QUEUED the user is told at once that the bot is busy (in
the command's ack, in the photo's thread), everything accepted is answered, /healthz shows the queue,
and on shutdown the process takes no new work and finishes what it accepted.

The pool's jobs wait until the test releases them, so "full" is a state the test sets, not a race.
"""
from __future__ import annotations

import json
import threading
import urllib.request
from types import SimpleNamespace

from bot.server import DRAIN_SECONDS, drain_answers
from bot.work import BUSY_TEXT, WorkPool
from bot_support import ALICE, CHANNEL, bot_settings, emu, indexed, serve_bot  # noqa: F401
from photos import jpeg_bytes


class HeldPool(WorkPool):
    """Accepted jobs wait for `release` before running."""

    def __init__(self, max_queued: int):
        super().__init__(max_queued=max_queued)
        self.release = threading.Event()

    def _run(self, job, args):
        self.release.wait()
        super()._run(job, args)


def ack_text(ack) -> str:
    return ack.json()["text"] if ack.headers.get("Content-Type", "").startswith("application/json") else ack.body


def health(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as answer:
        return json.loads(answer.read())


def test_a_burst_beyond_the_bound_is_told_busy_at_once_and_every_accepted_request_is_answered(indexed, emu):
    pool = HeldPool(max_queued=3)
    with serve_bot(indexed, work=pool) as bot:
        acks = [emu.send_slash_command(bot.events_url, text=f"stage {n}", user_id=ALICE, channel_id=CHANNEL)
                for n in range(5)]
        assert health(bot.base_url)["queued"] == 3

        photo = emu.add_file(jpeg_bytes(seed=600), "busy.jpg", user=ALICE)
        posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
        delivery = emu.send_event(bot.events_url, posted)
        told = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing="busy", timeout=15)

        pool.release.set()
        assert pool.drain(60) == 0
        assert health(bot.base_url)["queued"] == 0

    assert all(a.status == 200 and a.elapsed < 3 for a in [*acks, delivery])
    assert [ack_text(a) for a in acks[3:]] == [BUSY_TEXT, BUSY_TEXT], "told privately, in the ack"
    assert all(ack_text(a).startswith("Searching the archive for") for a in acks[:3])
    assert told.visible_text == BUSY_TEXT
    assert len(emu.uploads(CHANNEL)) == 3, "each accepted command answered, nothing for the refused ones"
    assert emu.downloads(photo["id"]) == [], "a refused photo is not even downloaded"


def test_stopping_takes_no_new_work_and_finishes_what_was_accepted():
    pool, ran = HeldPool(max_queued=10), []
    for n in range(4):
        assert pool.submit(ran.append, n)
    left = []
    stopping = threading.Thread(target=lambda: left.append(pool.drain(60)))
    stopping.start()
    while not pool._closed:  # drain has begun
        threading.Event().wait(0.01)
    assert pool.submit(ran.append, 99) is False and pool.reserve() is None
    pool.release.set()
    stopping.join()
    assert left == [0] and sorted(ran) == [0, 1, 2, 3]


def test_what_is_unfinished_when_the_time_is_up_is_counted_and_gunicorns_hook_drains_the_apps_pool():
    pool = HeldPool(max_queued=10)
    pool.submit(lambda: None)
    assert pool.drain(0) == 1
    pool.release.set()

    drained = []
    worker = SimpleNamespace(wsgi=SimpleNamespace(work=SimpleNamespace(drain=drained.append)))
    drain_answers(None, worker)
    assert drained == [DRAIN_SECONDS] and 0 < DRAIN_SECONDS < 30

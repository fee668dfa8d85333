"""A bounded answer queue: past FINDIMAGE_MAX_QUEUED the user is told at once that the bot is busy (in
the command's ack, in the photo's thread), everything accepted is answered, /healthz shows the queue,
and on shutdown the process takes no new work and finishes what it accepted.

The pool's jobs wait until the test releases them, so "full" is a state the test sets, not a race.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from bot_support import ALICE, CHANNEL, BotProcess, free_port, held_work, process_env, serve_bot, slack_env
from photos import jpeg_bytes

from bot.server import DRAIN_SECONDS, drain_answers
from bot.work import BUSY_TEXT

ROOT = Path(__file__).resolve().parents[3]


def ack_text(ack) -> str:
    return ack.json()["text"] if ack.headers.get("Content-Type", "").startswith("application/json") else ack.body


def health(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as answer:
        return json.loads(answer.read())


def test_a_burst_beyond_the_bound_is_told_busy_at_once_and_every_accepted_request_is_answered(indexed, emu):
    with held_work(max_queued=3) as pool, serve_bot(indexed, work=pool) as bot:
        acks = [emu.send_slash_command(bot.events_url, text=f"stage {n}", user_id=ALICE, channel_id=CHANNEL)
                for n in range(5)]
        assert health(bot.base_url)["queued"] == 3

        photo = emu.add_file(jpeg_bytes(seed=600), "busy.jpg", user=ALICE)
        posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
        delivery = emu.send_event(bot.events_url, posted)
        told = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing="busy", timeout=15)
        # Every ack (and the "busy" note) came back while no accepted job had run: they wait for no work.
        assert emu.uploads(CHANNEL) == []

        pool.release()
        assert pool.drain(60) == 0
        assert health(bot.base_url)["queued"] == 0

    assert [a.status for a in [*acks, delivery]] == [200] * 6
    assert [ack_text(a) for a in acks[3:]] == [BUSY_TEXT, BUSY_TEXT], "told privately, in the ack"
    assert all(ack_text(a).startswith("Searching the archive for") for a in acks[:3])
    assert told.visible_text == BUSY_TEXT
    assert len(emu.uploads(CHANNEL)) == 3, "each accepted command answered, nothing for the refused ones"
    assert emu.downloads(photo["id"]) == [], "a refused photo is not even downloaded"


def test_stopping_takes_no_new_work_and_finishes_what_was_accepted():
    ran, left = [], []
    with held_work(max_queued=10) as pool:
        for n in range(4):
            assert pool.submit(ran.append, n)
        stopping = threading.Thread(target=lambda: left.append(pool.drain(60)))
        stopping.start()
        while not pool._closed:  # drain has begun
            threading.Event().wait(0.01)
        assert pool.submit(ran.append, 99) is False and pool.reserve() is None
        pool.release()
        stopping.join()
    assert left == [0] and sorted(ran) == [0, 1, 2, 3]


def test_what_is_unfinished_when_the_time_is_up_is_counted_and_gunicorns_hook_drains_the_apps_pool():
    with held_work(max_queued=10) as pool:
        pool.submit(lambda: None)
        assert pool.drain(0) == 1
        pool.release()

    drained = []
    worker = SimpleNamespace(wsgi=SimpleNamespace(work=SimpleNamespace(drain=drained.append)))
    drain_answers(None, worker)
    assert drained == [DRAIN_SECONDS] and 0 < DRAIN_SECONDS < 30


# The deployed web process, with answers that wait for a file the test writes: SIGTERM arrives while
# two accepted answers are still queued.
HELD_ANSWERS = """
import sys, time
from pathlib import Path
import bot.answering

gate, answer = Path(sys.argv[1]), bot.answering.answer_query

def answer_when_released(*args):
    while not gate.exists():
        time.sleep(0.05)
    answer(*args)

bot.answering.answer_query = answer_when_released
from findimage_cli import main
sys.exit(main(["bot"]))
"""


def test_on_sigterm_the_web_process_takes_no_new_requests_and_delivers_what_it_accepted(indexed, env, emu, tmp_path):
    port, gate = free_port(), tmp_path / "release"
    script = tmp_path / "held_answers.py"
    script.write_text(HELD_ANSWERS)
    values = process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1")
    web = BotProcess([sys.executable, str(script), str(gate)], values, cwd=ROOT)
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        base = f"http://127.0.0.1:{port}"
        acks = [emu.send_slash_command(f"{base}/slack/events", text=f"stage {n}", channel_id=CHANNEL)
                for n in range(2)]
        assert health(base)["queued"] == 2 and emu.uploads(CHANNEL) == [], "acked before any answer ran"
        web.process.send_signal(signal.SIGTERM)
        web.wait_for_line("Worker exiting")  # requests are no longer taken; the queued answers are drained
        with pytest.raises(OSError):
            health(base)
        gate.touch()
        status = web.process.wait(60)
    finally:
        web.stop()

    assert [a.status for a in acks] == [200, 200]
    assert len(emu.uploads(CHANNEL)) == 2, "both accepted answers were delivered before the exit"
    assert "every accepted answer was delivered; stopping" in web.output
    assert status == 0, web.output

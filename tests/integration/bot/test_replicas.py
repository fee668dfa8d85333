"""Two bot replicas behind one router, sharing the seen keys in Elasticsearch: whichever replica Slack's
delivery and its retries reach, every posted photo is answered exactly once.

Both replicas are the real WSGI app on real HTTP servers (bot_support.serve_bot), with the Elasticsearch
store indexed on the test server and Slack played by the emulator.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from bot_support import ALICE, CHANNEL, held_work, serve_bot
from es_support import es_only
from photos import jpeg_bytes

pytestmark = [es_only, pytest.mark.timeout(300)]


@pytest.fixture
def replicas(indexed):
    # Each replica's answers wait until the test releases them: deliveries acked before any answer
    # ran were acked without waiting for the work (Slack's 3 s), on however busy a machine.
    # (The seen keys and the lease go with the test's index: es_support.drop.)
    with held_work(max_queued=indexed.max_queued) as first, held_work(max_queued=indexed.max_queued) as second, \
            serve_bot(indexed, work=first) as one, serve_bot(indexed, work=second) as two:
        yield one, two


def post_photo(emu, seed: int, name: str) -> dict:
    photo = emu.add_file(jpeg_bytes(seed=seed), name, user=ALICE)
    return emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)


def release(replicas) -> None:
    for replica in replicas:
        replica.wsgi.work.release()


def settle(emu, replicas, seed: int) -> None:
    """A photo posted after everything else, answered by each replica: earlier deliveries were handled."""
    for n, replica in enumerate(replicas):
        barrier = post_photo(emu, seed + n, f"barrier-{n}.jpg")
        emu.send_event(replica.events_url, barrier)
        emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=30)
    for replica in replicas:
        assert replica.wsgi.work.drain(60) == 0


def test_the_same_event_delivered_to_both_replicas_is_answered_once(replicas, emu):
    one, two = replicas
    posted = post_photo(emu, 400, "both.jpg")

    first = emu.send_event(one.events_url, posted, event_id="Ev0BOTH")
    retry = emu.send_event(two.events_url, posted, event_id="Ev0BOTH", retry_num=1)  # the router chose the other
    redelivered = emu.send_event(two.events_url, posted, event_id="Ev0OTHER")  # same file, another event id
    assert emu.uploads(CHANNEL) == []
    release(replicas)
    emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=30)
    settle(emu, replicas, 401)

    assert [d.status for d in (first, retry, redelivered)] == [200, 200, 200]
    assert len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 1
    assert len(emu.downloads(posted["files"][0]["id"])) == 1


def test_twenty_events_with_retries_spread_over_both_replicas_get_twenty_answers(replicas, emu):
    posts = [post_photo(emu, 500 + n, f"photo-{n}.jpg") for n in range(20)]
    deliveries = []
    for n, posted in enumerate(posts):
        event_id = f"Ev0MANY{n:02d}"
        # The first delivery to one replica, Slack's retries to either, all at about the same time.
        for attempt, replica in enumerate([replicas[n % 2], replicas[(n + 1) % 2], replicas[n % 2]]):
            deliveries.append((replica.events_url, posted, event_id, attempt or None))
    with ThreadPoolExecutor(12) as senders:
        answers = list(senders.map(lambda d: emu.send_event(d[0], d[1], event_id=d[2], retry_num=d[3]), deliveries))
    assert emu.uploads(CHANNEL) == []
    release(replicas)
    emu.wait_for(lambda: all(emu.uploads(CHANNEL, thread_ts=p["ts"]) for p in posts), timeout=120,
                 what="an answer to each of the 20 photos")
    settle(emu, replicas, 540)

    assert [a.status for a in answers] == [200] * 60
    per_photo = [len(emu.uploads(CHANNEL, thread_ts=p["ts"])) for p in posts]
    assert per_photo == [1] * 20 and sum(per_photo) == 20
    assert all(len(emu.downloads(p["files"][0]["id"])) == 1 for p in posts)

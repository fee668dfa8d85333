"""What is deleted in Slack is gone from what findimage remembered, within seconds, whatever else the bot
is busy with, and through a restart: deletions are kept before Slack hears they arrived, and applied on a
lane of their own. A channel shared with another organisation hides its remembered images from the very
next answer; a channel taken off the allowlist is no longer remembered, and can still be forgotten."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

from bot_support import ALICE, BOB, CHANNEL, serve_bot
from es_support import both_stores
from photos import jpeg_bytes
from test_remembered_channels import (
    GENERAL,
    command,
    everything_said,
    post_photo,
    remember,
    remembered_files,
    wait_remembered,
)

from findimage.backends import open_remembered
from findimage.records import Posted
from findimage.stores.base import LIFECYCLE, REMEMBER, Pending

FLOOD = 1500


def backlog(bot) -> dict[str, int]:
    return bot.searcher.remembered.registry.backlog()


def send_all(emu, bot, events) -> None:
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda event: emu.send_event(bot.events_url, event).status, events))
    assert set(statuses) == {200}


def deleted(photo) -> dict:
    return {"type": "file_deleted", "file_id": photo["id"], "event_ts": f"{time.time():.6f}"}


def test_a_deleted_file_is_forgotten_within_seconds_while_remembering_is_far_behind_and_stays_forgotten(
        indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        secret, _ = post_photo(emu, bot, "wifi password whiteboard.jpg", seed=920)
        wait_remembered(emu, bot, secret["id"])
        # A burst: 1,500 messages with an image, every one waiting to be remembered (one answer: the same file)
        busy = emu.add_file(jpeg_bytes(seed=921), "sprint board.jpg", user=BOB)
        send_all(emu, bot, [emu.post_user_message_with_files(CHANNEL, [busy], user=BOB) for _ in range(FLOOD)])
        assert backlog(bot).get(REMEMBER, 0) > FLOOD // 2  # nothing dropped: kept, not queued in memory

        emu.send_event(bot.events_url, deleted(secret))
        emu.wait_for(lambda: secret["id"] not in remembered_files(bot), timeout=10, what="the deleted file forgotten")
        assert bot.searcher.remembered.store.get(Posted(CHANNEL, secret["id"], "", "").image_id) is None
        assert backlog(bot).get(REMEMBER, 0) > 100  # it did not wait for the remembering ahead of it
        bot.wsgi.memory.stop()
        left = backlog(bot).get(REMEMBER, 0)

    emu.clear_records()
    with serve_bot(indexed) as bot:  # a restart: the deletion holds, the remembering goes on where it was
        assert 0 < backlog(bot).get(REMEMBER, 0) <= left
        command(emu, bot, "wifi password whiteboard")
        emu.wait_for_upload(CHANNEL, timeout=20)
        assert secret["id"] not in everything_said(emu) and secret["id"] not in remembered_files(bot)
        bot.wsgi.memory.stop()


@both_stores
def test_a_repost_waiting_to_be_remembered_is_not_remembered_after_its_file_was_deleted(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        busy = emu.add_file(jpeg_bytes(seed=922), "sprint board.jpg", user=BOB)
        secret = emu.add_file(jpeg_bytes(seed=923), "wifi password whiteboard.jpg", user=BOB)
        waiting = [emu.post_user_message_with_files(CHANNEL, [busy], user=BOB) for _ in range(40)]
        waiting.append(emu.post_user_message_with_files(CHANNEL, [secret], user=ALICE))  # last in line
        send_all(emu, bot, waiting)
        emu.send_event(bot.events_url, deleted(secret))  # deleted before its turn came
        emu.wait_for(lambda: not backlog(bot), timeout=60, what="the backlog done")
        assert remembered_files(bot) == {busy["id"]}


@both_stores
def test_a_deletion_kept_before_a_crash_is_applied_by_the_next_start(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=924)
        wait_remembered(emu, bot, photo["id"])
        bot.wsgi.memory.stop()  # the process ends right after keeping the event, before applying it
        emu.send_event(bot.events_url, deleted(photo), event_id="Ev0KEPT0001")
        time.sleep(0.5)
        assert photo["id"] in remembered_files(bot) and backlog(bot) == {LIFECYCLE: 1}
    with serve_bot(indexed) as bot:
        emu.wait_for(lambda: photo["id"] not in remembered_files(bot) and not backlog(bot), timeout=15,
                     what="the kept deletion applied")


def test_slack_hears_an_error_when_a_deletion_cannot_be_kept_and_its_retry_is_applied(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=925)
        wait_remembered(emu, bot, photo["id"])
        registry = bot.searcher.remembered.registry
        keep = registry.keep

        def store_away(entries):
            raise OSError("disk I/O error")

        registry.keep = store_away
        assert emu.send_event(bot.events_url, deleted(photo), event_id="Ev0RETRY001").status >= 500
        registry.keep = keep
        assert emu.send_event(bot.events_url, deleted(photo), event_id="Ev0RETRY001", retry_num=1).status == 200
        emu.wait_for(lambda: photo["id"] not in remembered_files(bot), timeout=10, what="the retried deletion")


def test_a_channel_shared_with_another_organisation_hides_its_images_from_the_very_next_answer(indexed, emu):
    with serve_bot(dataclasses.replace(indexed, allow_shared_channels=True)) as bot:
        remember(emu, bot)
        photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=926)
        wait_remembered(emu, bot, photo["id"])
        bot.wsgi.memory.stop()  # the forgetting itself waits: the answer must not
        emu.share_channel_externally(CHANNEL)
        emu.send_event(bot.events_url, {"type": "channel_shared", "connected_team_id": "T0PARTNER",
                                        "channel": CHANNEL, "event_ts": f"{time.time():.6f}"})
        emu.clear_records()
        command(emu, bot, "whiteboard sprint")
        emu.wait_for_upload(CHANNEL, timeout=20)  # archive images: shared channels are allowed here
        assert photo["id"] not in everything_said(emu) and "posted by" not in everything_said(emu)


def test_a_channel_taken_off_the_allowlist_is_no_longer_remembered_and_can_be_forgotten(indexed, emu):
    with serve_bot(dataclasses.replace(indexed, channels=(CHANNEL, GENERAL))) as bot:
        remember(emu, bot)
        first, _ = post_photo(emu, bot, "whiteboard.jpg", seed=927)
        wait_remembered(emu, bot, first["id"])
        bot.wsgi.memory.stop()
        # its history not yet read back when the allowlist changes
        state = bot.searcher.remembered.channel(CHANNEL)
        bot.searcher.remembered.registry.update_channel(dataclasses.replace(state, done=False, worker=""))
    emu.seed_history(CHANNEL, 5, files_every=1, step=60, start_ts=time.time() - 86_400)

    emu.clear_records()
    with serve_bot(dataclasses.replace(indexed, channels=(GENERAL,))) as bot:
        later = emu.add_file(jpeg_bytes(seed=928), "whiteboard again.jpg", user=BOB)
        emu.send_event(bot.events_url, emu.post_user_message_with_files(CHANNEL, [later], user=BOB))
        emu.wait_for(lambda: not backlog(bot), timeout=20, what="the post handled")
        assert remembered_files(bot) == {first["id"]}

        command(emu, bot, "remember status")
        status = emu.wait_for_response(containing="remember", timeout=15).visible_text
        assert "no longer on FINDIMAGE_CHANNELS" in status
        command(emu, bot, "remember")
        assert "not enabled in this channel" in emu.wait_for_response(containing="enabled", timeout=15).visible_text
        command(emu, bot, "forget")
        said = emu.wait_for_response(containing="turned off remembering", timeout=15).visible_text
        assert "the 1 image I remembered from it is deleted" in said
        assert remembered_files(bot) == set() and bot.searcher.remembered.registry.channels() == []
        assert emu.api_calls("conversations.history") == []  # nor was its history read


def test_a_kept_message_holds_what_remembering_needs_and_never_its_text(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        bot.wsgi.memory.stop()
        busy = emu.add_file(jpeg_bytes(seed=929), "sprint board.jpg", user=BOB)
        send_all(emu, bot, [emu.post_user_message_with_files(CHANNEL, [busy], user=BOB) for _ in range(3)])
    registry = open_remembered(indexed).registry
    try:
        assert registry.backlog() == {REMEMBER: 3}
        taken = registry.take(REMEMBER, 10, "elsewhere", time.time() + 3600, 60)
        assert all(isinstance(e, Pending) and e.event["files"][0]["id"] == busy["id"] for e in taken)
        assert all("text" not in e.event for e in taken)  # a message's text is never kept
    finally:
        registry.close()

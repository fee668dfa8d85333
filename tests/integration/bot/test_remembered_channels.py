"""Images posted in a channel, remembered where its members turn it on: found by queries in that channel,
and by no query anywhere else."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json

from bot_support import ALICE, BOB, CHANNEL, serve_bot
from es_support import both_stores, es_only
from leftovers import found_in_files, needles
from photos import jpeg_bytes
from rendered_text import screenshot

from findimage.errors import FindimageError
from findimage.records import Posted
from findimage_cli import EXIT_OK, main

GENERAL = "C0GENERAL"


def command(emu, bot, text, channel=CHANNEL, user=ALICE):
    return emu.send_slash_command(bot.events_url, text=text, user_id=user, channel_id=channel)


def remember(emu, bot, channel=CHANNEL) -> str:
    command(emu, bot, "remember", channel)
    return emu.wait_for_response(containing="turned on remembering", timeout=15).visible_text


def post_photo(emu, bot, name, seed, channel=CHANNEL, user=BOB):
    """Bob posts a photo; returns it and its event once the bot answered it (in the thread, as always)."""
    photo = emu.add_file(jpeg_bytes(seed=seed), name, user=user)
    event = emu.post_user_message_with_files(channel, [photo], user=user)
    assert emu.send_event(bot.events_url, event).status == 200
    emu.wait_for_upload(channel, thread_ts=event["ts"], timeout=20)
    return photo, event


def remembered_files(bot, channel=CHANNEL) -> set[str]:
    return {p.file_id for p in bot.searcher.remembered.registry.posted_in(channel)}


def wait_remembered(emu, bot, file_id, channel=CHANNEL):
    """Until the posting is recorded and its image stored and searchable (the posting is written first)."""
    remembered = bot.searcher.remembered

    def searchable() -> bool:
        try:  # a new Elasticsearch index may answer 503 for a moment
            if file_id not in remembered_files(bot, channel):
                return False
            image_id = Posted(channel, file_id, "", "").image_id
            return remembered.store.get(image_id) is not None and remembered.store.count() > 0
        except FindimageError:
            return False

    emu.wait_for(searchable, timeout=20, what=f"{file_id} remembered")


def everything_said(emu, channel=None) -> str:
    """Every text and block the bot sent (messages, response_url posts, upload comments)."""
    parts = [m.visible_text + repr(m.blocks) for m in emu.messages(channel)]
    parts += [r.visible_text + repr(r.blocks) for r in emu.responses()]
    parts += [u.initial_comment or "" for u in emu.uploads(channel)]
    return "\n".join(parts)


def test_a_photo_posted_after_remember_is_found_by_name_in_its_channel_only(bot, emu):
    announced = remember(emu, bot)
    assert f"<@{ALICE}> turned on remembering for this channel" in announced
    photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=900)
    wait_remembered(emu, bot, photo["id"])
    emu.clear_records()

    command(emu, bot, "whiteboard sprint", CHANNEL)
    shown = f"'slack_file': {{'id': '{photo['id']}'}}"  # by reference to Slack's file, never uploaded again
    emu.wait_for(lambda: shown in everything_said(emu), timeout=20, what="the answer in the channel")
    said = everything_said(emu)
    assert f"`whiteboard sprint planning.jpg` — posted by <@{BOB}> on " in said and "in this channel" in said
    assert all(photo["id"] not in repr(u.file_objects) for u in emu.uploads())

    emu.clear_records()
    command(emu, bot, "whiteboard sprint", GENERAL)
    emu.wait_for(lambda: emu.uploads(GENERAL), timeout=20, what="the answer in #general")
    said = everything_said(emu)
    assert "sprint planning.jpg" not in said and photo["id"] not in said and "posted by" not in said


def test_direct_messages_and_shared_channels_cannot_be_remembered(bot, emu):
    command(emu, bot, "remember", "D0ALICE")
    assert "only in channels" in emu.wait_for_response(containing="channels", timeout=15).visible_text
    emu.share_channel_externally("C0PARTNER")
    command(emu, bot, "remember", "C0PARTNER")
    assert "shared with another organisation" in emu.wait_for_response(containing="shared", timeout=15).visible_text
    assert bot.searcher.remembered.registry.channels() == []


def test_a_channel_the_bot_is_not_in_cannot_be_remembered(bot, emu):
    emu.add_conversation("C0PRIVATE", "private", member=False)
    command(emu, bot, "remember", "C0PRIVATE")
    assert "invite me" in emu.wait_for_response(containing="invite", timeout=15).visible_text
    assert bot.searcher.remembered.registry.channels() == []


def test_forget_deletes_everything_remembered_from_the_channel(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=901)
    wait_remembered(emu, bot, photo["id"])
    command(emu, bot, "forget")
    text = emu.wait_for_response(containing="turned off remembering", timeout=15).visible_text
    assert "the 1 image I remembered from it is deleted" in text
    assert remembered_files(bot) == set() and bot.searcher.remembered.registry.channels() == []
    assert bot.searcher.remembered.store.count() == 0
    # Posted after forget: not remembered
    later, _ = post_photo(emu, bot, "whiteboard again.jpg", seed=902)  # the ordinary answer still comes
    assert later["id"] not in remembered_files(bot)


def test_a_file_deleted_in_slack_is_forgotten(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=903)
    wait_remembered(emu, bot, photo["id"])
    emu.send_event(bot.events_url, {"type": "file_deleted", "file_id": photo["id"], "event_ts": "1700000000.000100"})
    emu.wait_for(lambda: photo["id"] not in remembered_files(bot), timeout=15, what="the deleted file forgotten")
    assert bot.searcher.remembered.store.count() == 0


def test_a_deleted_file_and_then_the_forgotten_channel_leave_nothing_in_the_data_folder(bot, emu, indexed):
    remember(emu, bot)
    first, _ = post_photo(emu, bot, "Quokkamarzipan offsite.jpg", seed=904)
    second, _ = post_photo(emu, bot, "Zanzibarfjord plan.jpg", seed=905)
    for photo in (first, second):
        wait_remembered(emu, bot, photo["id"])
    store = bot.searcher.remembered.store
    # Their names and vectors; not their file ids: a deleted file's id is recorded for a while on purpose
    # (Remembered.forget_deleted), so a posting of it still waiting to be remembered is not.
    first_left, second_left = (
        needles([word], [store.get(Posted(CHANNEL, photo["id"], "", "").image_id).image_embedding])
        for word, photo in (("Quokkamarzipan", first), ("Zanzibarfjord", second)))
    data = indexed.data_dir
    assert found_in_files(data, first_left) and found_in_files(data, second_left)  # the scan sees them at all

    emu.send_event(bot.events_url, {"type": "file_deleted", "file_id": first["id"], "event_ts": "1700000000.000100"})
    emu.wait_for(lambda: not found_in_files(data, first_left), timeout=15, what="the deleted file gone from disk")
    assert found_in_files(data, second_left)  # the channel's other image is still remembered
    command(emu, bot, "forget")
    emu.wait_for_response(containing="turned off remembering", timeout=15)
    emu.wait_for(lambda: not found_in_files(data, second_left), timeout=15, what="the channel gone from disk")


def test_remember_status_says_what_is_on(bot, emu):
    command(emu, bot, "remember status")
    assert "`/findimage remember` turns it on" in emu.wait_for_response(containing="remember", timeout=15).visible_text
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=904)
    wait_remembered(emu, bot, photo["id"])
    emu.clear_records()
    command(emu, bot, "remember status")
    text = emu.wait_for_response(containing="I remember the images", timeout=15).visible_text
    assert f"turned on by <@{ALICE}>): 1 image so far" in text


def buttons_of(emu, channel=CHANNEL):
    """The last message of the bot in `channel` that carries the answer's buttons (a response_url post)."""
    return emu.wait_for(lambda: next((r for r in reversed(emu.responses()) if r.channel_id == channel
                                      and "more_like_this" in repr(r.blocks)), None), timeout=20,
                        what="the answer's buttons")


def test_more_like_a_remembered_image_answers_in_its_channel_and_nowhere_else(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=905)
    wait_remembered(emu, bot, photo["id"])
    emu.clear_records()
    command(emu, bot, "whiteboard sprint")
    post = buttons_of(emu)
    assert photo["id"] in repr(post.blocks)
    [remembered_rank] = [n for n in range(1, 6) if bot.searcher.remembered.registry.posted(
        [b["value"] for b in post.blocks[-1]["elements"] if b["action_id"] == f"more_like_this:{n}"])]

    emu.clear_records()
    emu.send_interaction(bot.events_url, emu.block_actions_payload(post, f"more_like_this:{remembered_rank}", ALICE))
    emu.wait_for(lambda: any("asked for more like `whiteboard sprint planning.jpg`" in u.initial_comment
                             for u in emu.uploads(CHANNEL)), timeout=20, what="its neighbours")

    # The same button, replayed from another channel: nothing about the image is said there.
    emu.clear_records()
    replayed = emu.block_actions_payload(post, f"more_like_this:{remembered_rank}", BOB)
    replayed["container"]["channel_id"] = GENERAL
    replayed["channel"] = {"id": GENERAL, "name": "general"}
    replayed["response_url"] = emu.new_response_url(GENERAL, BOB, kind="actions")
    emu.send_interaction(bot.events_url, replayed)
    refusal = emu.wait_for_response(containing="no longer in the archive", timeout=20)
    assert refusal.ephemeral and "whiteboard" not in everything_said(emu)


def test_the_same_picture_posted_in_another_channel_does_not_reveal_the_remembered_one(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "budget draft.jpg", seed=906)
    wait_remembered(emu, bot, photo["id"])
    emu.clear_records()

    twin = emu.add_file(jpeg_bytes(seed=906), "copy.jpg", user=ALICE)  # byte-identical
    event = emu.post_user_message_with_files(GENERAL, [twin], user=ALICE)
    emu.send_event(bot.events_url, event)
    answer = emu.wait_for_upload(GENERAL, thread_ts=event["ts"], timeout=20)
    said = everything_said(emu)
    assert "budget draft" not in said and photo["id"] not in said and "exact match" not in answer.initial_comment

    # In its own channel the twin is recognised: the remembered picture, byte-identical
    emu.clear_records()
    again = emu.add_file(jpeg_bytes(seed=906), "copy again.jpg", user=ALICE)
    event = emu.post_user_message_with_files(CHANNEL, [again], user=ALICE)
    emu.send_event(bot.events_url, event)
    emu.wait_for(lambda: "`budget draft.jpg` — posted by" in everything_said(emu), timeout=20,
                 what="the remembered picture in its channel's answer")
    assert "*exact match* (byte-identical)" in everything_said(emu)


def test_a_channel_shared_with_another_organisation_is_forgotten(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard.jpg", seed=907)
    wait_remembered(emu, bot, photo["id"])
    emu.share_channel_externally(CHANNEL)
    emu.send_event(bot.events_url, {"type": "channel_shared", "connected_team_id": "T0PARTNER", "channel": CHANNEL,
                                    "event_ts": "1700000000.000200"})
    emu.wait_for(lambda: not bot.searcher.remembered.registry.channels(), timeout=15, what="the channel forgotten")
    assert bot.searcher.remembered.store.count() == 0


def test_remembered_images_outlive_a_restart(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=908)
        wait_remembered(emu, bot, photo["id"])
    emu.clear_records()
    with serve_bot(indexed) as bot:
        command(emu, bot, "whiteboard sprint")
        emu.wait_for(lambda: f"'slack_file': {{'id': '{photo['id']}'}}" in everything_said(emu), timeout=20,
                     what="the remembered image after the restart")


def test_the_cli_shows_remembered_images_only_for_an_explicit_channel(bot, emu, indexed, capsys):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=909)
    wait_remembered(emu, bot, photo["id"])
    assert main(["search", "whiteboard", "sprint", "-k", "10"]) == EXIT_OK
    assert "whiteboard" not in capsys.readouterr().out
    assert main(["search", "whiteboard", "sprint", "-k", "10", "--channel", GENERAL]) == EXIT_OK
    assert "whiteboard" not in capsys.readouterr().out
    assert main(["search", "whiteboard", "sprint", "-k", "10", "--channel", CHANNEL, "--json"]) == EXIT_OK
    found = json.loads(capsys.readouterr().out)
    assert [m["posted"]["file_id"] for m in found if m.get("posted")] == [photo["id"]]


@both_stores
def test_on_both_stores_a_remembered_image_is_found_in_its_channel_only(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=910)
    wait_remembered(emu, bot, photo["id"])
    for channel in (GENERAL, CHANNEL):
        emu.clear_records()
        command(emu, bot, "whiteboard sprint", channel)
        buttons_of(emu, channel)
        assert (photo["id"] in everything_said(emu)) == (channel == CHANNEL)


def test_a_remembered_screenshot_is_found_by_the_words_in_it_with_reading_text_on(indexed, emu):
    alert = screenshot("Alerts", ["ERROR: disk quota exceeded on volume /srv/data"], seed=5)
    with serve_bot(dataclasses.replace(indexed, ocr=True)) as bot:
        remember(emu, bot)
        photo = emu.add_file(png_of(alert.image), "Screenshot 2026-12-01.png", user=BOB)
        emu.send_event(bot.events_url, emu.post_user_message_with_files(CHANNEL, [photo], user=BOB))
        store = bot.searcher.remembered.store
        emu.wait_for(lambda: store.text_status() == (1, 1), timeout=90, what="its text read")
        emu.clear_records()
        command(emu, bot, "disk quota exceeded")
        emu.wait_for(lambda: "`Screenshot 2026-12-01.png` — posted by" in everything_said(emu), timeout=30,
                     what="the screenshot found by its text")
        said = everything_said(emu)
        assert "text matched" in said and "*disk* *quota* *exceeded*" in said


def test_a_posted_image_whose_reading_times_out_is_recorded_as_failed(indexed, emu):
    """Its bytes are not kept, so no later pass could read it again: the timeout ends its reading."""
    alert = png_of(screenshot("Alerts", ["ERROR: disk quota exceeded on volume /srv/data"], seed=6).image)
    with serve_bot(dataclasses.replace(indexed, ocr=True, ocr_timeout_seconds=0.001)) as bot:
        remember(emu, bot)
        photo = emu.add_file(alert, "Screenshot 2026-12-02.png", user=BOB)
        emu.send_event(bot.events_url, emu.post_user_message_with_files(CHANNEL, [photo], user=BOB))
        store, sha256 = bot.searcher.remembered.store, hashlib.sha256(alert).hexdigest()
        emu.wait_for(lambda: store.texts_by_sha256([sha256]), timeout=60, what="its reading recorded")
        reading = store.texts_by_sha256([sha256])[sha256]
        assert (reading.state, reading.reason) == ("failed", "reading its text took longer than 0.001 s")
        assert store.text_status() == (1, 1) and store.text_pending(5) == []


def png_of(image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@es_only
def test_replicas_on_elasticsearch_share_what_is_remembered_and_what_is_forgotten(indexed, emu):
    with serve_bot(indexed) as one, serve_bot(indexed) as two:
        remember(emu, one)
        photo, _ = post_photo(emu, one, "whiteboard sprint planning.jpg", seed=911)
        wait_remembered(emu, one, photo["id"])
        emu.clear_records()
        command(emu, two, "whiteboard sprint")  # the other replica
        shown = f"'slack_file': {{'id': '{photo['id']}'}}"
        emu.wait_for(lambda: shown in everything_said(emu), timeout=20, what="found through the other replica")
        command(emu, two, "forget")
        emu.wait_for_response(containing="turned off remembering", timeout=15)
        assert one.searcher.remembered.channel(CHANNEL) is None and remembered_files(one) == set()


def test_the_home_tab_examples_never_show_remembered_images(bot, emu):
    remember(emu, bot)
    photo, _ = post_photo(emu, bot, "a snow covered mountain.jpg", seed=912)  # named like the first example
    wait_remembered(emu, bot, photo["id"])
    emu.send_event(bot.events_url, emu.app_home_opened(ALICE))
    home = emu.wait_for_view(ALICE, containing="Try an example", timeout=20)
    emu.clear_records()
    emu.send_interaction(bot.events_url, emu.block_actions_payload(home, "home_example:1", ALICE))
    answer = emu.wait_for_upload(emu.dm_channel(ALICE), timeout=20)
    assert "snow covered mountain.jpg" not in answer.initial_comment and photo["id"] not in everything_said(emu)


def test_even_where_shared_channels_are_allowed_a_shared_channel_never_shows_remembered_images(indexed, emu):
    with serve_bot(indexed) as bot:
        remember(emu, bot)
        photo, _ = post_photo(emu, bot, "whiteboard sprint planning.jpg", seed=913)
        wait_remembered(emu, bot, photo["id"])
    emu.share_channel_externally(CHANNEL)  # shared while no bot ran: no channel_shared event reached it
    emu.clear_records()
    with serve_bot(dataclasses.replace(indexed, allow_shared_channels=True)) as bot:
        command(emu, bot, "whiteboard sprint")
        emu.wait_for_upload(CHANNEL, timeout=20)  # archive images: allowed here by the setting
        assert photo["id"] not in everything_said(emu) and "posted by" not in everything_said(emu)

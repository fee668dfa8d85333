"""The "Find similar images" message shortcut and the App Home tab, as Slack sends them."""
from __future__ import annotations

import json

from bot_support import ALICE, BOB, CHANNEL, assert_answers_held, held_work, serve_bot
from photos import jpeg_bytes, save_photo

from indexer.run import index_once


def test_the_shortcut_on_a_photo_with_a_byte_identical_twin_answers_the_twin_first_in_its_thread(bot_settings, emu):
    poster = save_photo(bot_settings.archive / "posters" / "festival.jpg", seed=400)
    index_once(bot_settings, progress=False)
    photo = emu.add_file(poster.read_bytes(), "IMG_2041.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], text="where is this from?", user=ALICE)
    with held_work() as work, serve_bot(bot_settings, work=work) as bot:
        ack = emu.send_interaction(bot.events_url, emu.message_action_payload(posted, CHANNEL, BOB))
        assert ack.status == 200
        assert_answers_held(work, emu, 1)  # acked while the answer (download, search, upload) waits
        assert emu.downloads(photo["id"]) == []
        work.release()
        answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)
        buttons = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert answer.files[0].title == "1. posters/festival.jpg · 1.000 (exact match)"
    assert "more_like_this:1" in json.dumps(buttons.blocks)
    assert emu.responses() == [], "nothing to say privately"


def test_the_shortcut_on_a_message_without_images_gets_a_private_note(bot, emu):
    chat = emu.user_message(CHANNEL, "lunch at noon?", user=ALICE)
    payload = emu.message_action_payload(chat, CHANNEL, BOB)

    ack = emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert ack.status == 200
    assert note.ephemeral and note.text.startswith("This message has no images")
    assert emu.uploads() == [] and emu.messages() == []


def test_the_shortcut_where_the_bot_may_not_post_tells_only_the_user_why(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=310), "elsewhere.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    payload = emu.message_action_payload(posted, CHANNEL, BOB)
    emu.inject_error("files.completeUploadExternal", "not_in_channel")

    emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert note.ephemeral and "I cannot post in this channel: invite me" in note.text
    assert emu.messages() == []


def test_opening_the_home_tab_shows_the_current_document_count_each_time(held_bot, emu, bot_settings):
    bot = held_bot
    ack = emu.send_event(bot.events_url, emu.app_home_opened(ALICE))
    assert ack.status == 200
    assert_answers_held(bot.work, emu, 1)  # the view is published after the ack
    assert emu.views(ALICE) == []
    bot.work.release()
    home = emu.wait_for_view(ALICE, timeout=15)
    save_photo(bot_settings.archive / "posters" / "new.jpg", seed=410)
    (bot_settings.archive / "posters" / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    index_once(bot_settings, progress=False)
    emu.send_event(bot.events_url, emu.app_home_opened(ALICE))
    again = emu.wait_for_view(ALICE, containing="Images indexed:* 8", timeout=15)

    assert "*Images indexed:* 7" in home.visible_text
    assert "1 added" in again.visible_text and "*Files that failed to index:* 1" in again.visible_text
    assert "/findimage a snow covered mountain" in home.visible_text
    emu.send_event(bot.events_url, emu.app_home_opened(ALICE, tab="messages"))
    emu.send_event(bot.events_url, emu.app_home_opened(BOB))
    emu.wait_for_view(BOB, timeout=15)
    assert len(emu.views(ALICE)) == 2, "the Messages tab is not a reason to publish"


def test_an_example_on_the_home_tab_is_answered_in_the_users_direct_messages(bot, emu):
    emu.send_event(bot.events_url, emu.app_home_opened(ALICE))
    home = emu.wait_for_view(ALICE, timeout=15)

    click = emu.send_interaction(bot.events_url, emu.block_actions_payload(home, "home_example:1", ALICE))
    answer = emu.wait_for_upload(emu.dm_channel(ALICE), timeout=15)

    assert click.status == 200
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive for `a snow covered mountain`")
    assert emu.uploads(CHANNEL) == [] and len(emu.uploads()) == 1

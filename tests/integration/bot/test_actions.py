"""Answers you can act on: "More like #n" and "Show more" under every answer, clicked as Slack sends it."""
from __future__ import annotations

import json
import logging

import numpy as np
from bot_support import (
    ALICE,
    BOB,
    CHANNEL,
    assert_answers_held,
    buttons_post,
    ranks,
    reference_text_ranking,
    said_in_slack,
    serve_bot,
    stored_vectors,
    titles,
)
from photos import jpeg_bytes

from findimage.records import image_id_for


def button_value(post, action_id: str) -> str:
    from slack_emulator.interactivity import find_button

    return find_button(post.blocks, action_id)[1]["value"]


def brute_force_neighbours(settings, image_id: str, k: int) -> list[str]:
    """The k archive paths nearest to `image_id` by cosine over every stored vector (itself excluded)."""
    paths, vectors = stored_vectors(settings)
    ids = [image_id_for(p) for p in paths]
    order = np.argsort(-(vectors @ vectors[ids.index(image_id)]), kind="stable")
    return [paths[i] for i in order if ids[i] != image_id][:k]


def test_more_like_this_on_result_3_is_acked_first_then_answers_its_neighbours_and_leaves_it_out(
        held_bot, emu, indexed):
    bot = held_bot
    bot.work.release()
    emu.send_slash_command(bot.events_url, text="stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    first = emu.wait_for_upload(CHANNEL, timeout=15)
    post = buttons_post(emu)
    clicked_id = button_value(post, "more_like_this:3")
    expected = brute_force_neighbours(indexed, clicked_id, 5)

    bot.work.hold()
    before = said_in_slack(emu)
    click = emu.send_interaction(bot.events_url, emu.block_actions_payload(post, "more_like_this:3", BOB))
    assert click.status == 200
    assert_answers_held(bot.work, emu, 1, before)  # acked while the answer waits
    bot.work.release()
    answer = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "the answer to the click")[0]

    assert titles(answer) == expected
    assert titles(first)[2] not in titles(answer), "the clicked image itself is left out"
    assert answer.initial_comment.startswith(f"<@{BOB}> asked for more like `{titles(first)[2]}` (that image "
                                             "itself is left out")
    follow_up = buttons_post(emu, 1)
    assert follow_up.channel_id == CHANNEL and not follow_up.ephemeral, "in the channel, like the command"
    assert button_value(follow_up, "more_like_this:1") != clicked_id, "its results have buttons too"
    assert json.loads(button_value(follow_up, "show_more")) == {"k": 5, "s": 5, "i": clicked_id}


def test_show_more_gives_the_next_k_results_none_repeated_until_the_archive_runs_out(bot, emu, indexed):
    emu.send_slash_command(bot.events_url, text="k=3 a concert under red lights", user_id=ALICE, channel_id=CHANNEL)
    first = emu.wait_for_upload(CHANNEL, timeout=15)
    expected = [path for path, _ in reference_text_ranking(indexed, "a concert under red lights", 7)]

    emu.send_interaction(bot.events_url, emu.block_actions_payload(buttons_post(emu), "show_more", ALICE))
    second = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "page 2")[0]
    emu.send_interaction(bot.events_url, emu.block_actions_payload(buttons_post(emu, 1), "show_more", ALICE))
    third = emu.wait_for(lambda: emu.uploads(CHANNEL)[2:], 15, "page 3")[0]

    assert ranks(first) == [1, 2, 3] and ranks(second) == [4, 5, 6] and ranks(third) == [7]
    assert titles(first) + titles(second) + titles(third) == expected
    assert len(set(expected)) == 7, "every archive image once"
    assert "results 4 to 6" in second.initial_comment and "results 7 to 7" in third.initial_comment
    last_buttons = buttons_post(emu, 2)
    assert "show_more" not in json.dumps(last_buttons.blocks), "the archive has no 8th image to offer"


def test_show_more_stops_at_FINDIMAGE_MAX_RESULTS(indexed, emu):
    with serve_bot(indexed.__class__(**{**indexed.__dict__, "max_results": 4})) as bot:
        emu.send_slash_command(bot.events_url, text="k=3 a snow covered mountain", channel_id=CHANNEL)
        emu.wait_for_upload(CHANNEL, timeout=15)
        emu.send_interaction(bot.events_url, emu.block_actions_payload(buttons_post(emu), "show_more", ALICE))
        second = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "page 2")[0]

    assert ranks(second) == [4], "only up to result 4"
    assert "show_more" not in json.dumps(buttons_post(emu, 1).blocks)


def test_posted_photo_answers_have_more_like_this_in_the_thread_and_clicks_answer_there(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=300), "holiday.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    emu.send_event(bot.events_url, posted)
    emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)
    post = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert "show_more" not in json.dumps(post.blocks), "a posted photo is not kept, so there is no next page"
    emu.send_interaction(bot.events_url, emu.block_actions_payload(post, "more_like_this:1", BOB))
    answers = emu.wait_for(lambda: emu.uploads(CHANNEL, thread_ts=posted["ts"])[1:], 15, "the thread answer")

    assert answers[0].initial_comment.startswith(f"<@{BOB}> asked for more like")
    assert emu.uploads(CHANNEL, thread_ts=None)[0].thread_ts == posted["ts"], "nothing outside the thread"


def test_a_double_click_is_answered_once(bot, emu, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    emu.send_slash_command(bot.events_url, text="stage with red lights", channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    post = buttons_post(emu)

    clicks = [emu.send_interaction(bot.events_url, emu.block_actions_payload(post, "more_like_this:2", ALICE))
              for _ in range(2)]
    emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "the answer")
    emu.wait_for(lambda: any("clicked again" in r.getMessage() for r in caplog.records), 5, "the repeat dropped")
    # another person's click on the same button is theirs to make
    emu.send_interaction(bot.events_url, emu.block_actions_payload(post, "more_like_this:2", BOB))
    emu.wait_for(lambda: emu.uploads(CHANNEL)[2:], 15, "Bob's answer")

    assert [c.status for c in clicks] == [200, 200]
    assert len(emu.uploads(CHANNEL)) == 3


def test_a_forged_click_is_refused_and_not_answered(bot, emu):
    emu.send_slash_command(bot.events_url, text="stage with red lights", channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    payload = emu.block_actions_payload(buttons_post(emu), "more_like_this:1", ALICE)

    forged = emu.send_interaction(bot.events_url, payload, signing_secret="not-the-signing-secret")
    genuine = emu.send_interaction(bot.events_url, emu.block_actions_payload(buttons_post(emu), "show_more", ALICE))
    emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "the genuine click's answer")

    assert forged.status == 401 and genuine.status == 200
    assert len(emu.uploads(CHANNEL)) == 2 and "results 6 to" in emu.uploads(CHANNEL)[1].initial_comment


def test_a_button_whose_image_left_the_archive_is_answered_privately(bot, emu):
    emu.send_slash_command(bot.events_url, text="stage with red lights", channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    payload = emu.block_actions_payload(buttons_post(emu), "more_like_this:1", ALICE)
    payload["actions"][0]["value"] = "no-such-image"

    emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert note.ephemeral and "no longer in the archive" in note.text
    assert len(emu.uploads()) == 1

"""What real Slack sends and answers where the emulator once was kinder: conversations the bot is not in,
Slack Connect's stripped files, payloads without the user's team, a thread's parent, deleted files."""
from __future__ import annotations

import json

from bot_support import ALICE, BOB, CHANNEL, FakeClock, serve_bot, with_settings
from photos import jpeg_bytes

from bot.channels import CANNOT_CHECK_USER, NOT_A_MEMBER, NOT_ENABLED, OTHER_TEAM, BoundedCache
from bot.errors import FILE_GONE

PARTNER = "T0PARTNER"
GUEST = "U0GUEST"
PDF = b"%PDF-1.4 minutes of the meeting"


def answered_elsewhere(emu, bot, seed: int = 900) -> None:
    """A barrier: a photo posted in another channel, answered; everything sent before it was handled."""
    photo = emu.add_file(jpeg_bytes(seed=seed), "barrier.jpg", user=ALICE)
    posted = emu.post_user_message_with_files("C0BARRIER", [photo], user=ALICE)
    emu.send_event(bot.events_url, posted)
    emu.wait_for_upload("C0BARRIER", thread_ts=posted["ts"], timeout=15)
    emu.wait_for(lambda: bot.work.pending == 0, 15, "every accepted answer to finish")


# ---- 1. private channels and direct messages the bot is not in ------------------------------------------

def test_a_command_where_the_bot_cannot_see_the_conversation_asks_to_be_invited_not_to_retry(bot, emu):
    emu.add_conversation("C0SECRET", "private", member=False)
    emu.add_conversation("D0BOBCAROL", "im", member=False)

    in_private = emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id="C0SECRET")
    in_dm = emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id="D0BOBCAROL")
    private_note = emu.wait_for_response(in_private.response_url, timeout=15)
    dm_note = emu.wait_for_response(in_dm.response_url, timeout=15)

    assert private_note.ephemeral and private_note.text == NOT_A_MEMBER
    assert dm_note.ephemeral and dm_note.text == NOT_A_MEMBER
    assert "try again in a minute" not in private_note.text
    assert [c.response["error"] for c in emu.api_calls("conversations.info")] == ["channel_not_found"] * 2
    assert emu.uploads() == []


def test_the_shortcut_in_a_private_channel_the_bot_is_not_in_asks_to_be_invited(bot, emu):
    emu.add_conversation("C0SECRET", "private", member=False)
    photo = emu.add_file(jpeg_bytes(seed=901), "secret.jpg", user=ALICE)
    posted = emu.post_user_message_with_files("C0SECRET", [photo], user=ALICE)
    payload = emu.message_action_payload(posted, "C0SECRET", BOB)

    emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert note.ephemeral and note.text == NOT_A_MEMBER
    assert emu.downloads(photo["id"]) == [] and emu.uploads() == []


# ---- 2. stripped file objects ---------------------------------------------------------------------------

def test_a_pdf_in_a_slack_connect_channel_is_looked_up_and_gets_no_reply(bot, emu):
    emu.share_channel_externally(CHANNEL)
    minutes = emu.add_file(PDF, "minutes.pdf", "application/pdf", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [minutes], user=ALICE)
    assert posted["files"][0]["file_access"] == "check_file_info", "Slack Connect strips file objects"

    emu.send_event(bot.events_url, posted)
    answered_elsewhere(emu, bot)

    assert [c.params["file"] for c in emu.api_calls("files.info")] == [minutes["id"]]
    assert emu.messages(CHANNEL) == [], "nothing said where the other organisation reads it"


def test_a_stripped_pdf_outside_the_allowlist_gets_no_reply_and_a_stripped_photo_its_refusal(indexed, emu):
    with serve_bot(with_settings(indexed, channels=("C0ENABLED", "C0BARRIER"))) as running:
        minutes = emu.add_file(PDF, "minutes.pdf", "application/pdf", user=ALICE)
        pdf_post = emu.post_user_message_with_files(CHANNEL, [minutes], user=ALICE, file_access="check_file_info")
        photo = emu.add_file(jpeg_bytes(seed=902), "p.jpg", user=ALICE)
        photo_post = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE, file_access="check_file_info")
        emu.send_event(running.events_url, pdf_post)
        emu.send_event(running.events_url, photo_post)
        refusal = emu.wait_for_message(CHANNEL, thread_ts=photo_post["ts"], timeout=15)
        answered_elsewhere(emu, running)

    assert refusal.text == NOT_ENABLED
    assert emu.messages(CHANNEL, thread_ts=pdf_post["ts"]) == []
    assert emu.downloads(photo["id"]) == []


# ---- 3. the user's team, where the payload does not say it ---------------------------------------------

def test_a_guests_photo_is_refused_though_the_event_names_no_team(bot, emu):
    emu.add_user(GUEST, PARTNER)
    photo = emu.add_file(jpeg_bytes(seed=903), "guest.jpg", user=GUEST)
    first = emu.post_user_message_with_files(CHANNEL, [photo], user=GUEST)
    second = emu.post_user_message_with_files(CHANNEL, [emu.add_file(jpeg_bytes(seed=904), "g2.jpg", user=GUEST)],
                                              user=GUEST)
    assert "team" not in first and "user_team" not in first

    replies = []
    for posted in (first, second):  # one after the other: the second finds the first's look-up cached
        emu.send_event(bot.events_url, posted)
        replies.append(emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15))

    assert [r.text for r in replies] == [OTHER_TEAM, OTHER_TEAM]
    assert [c.params["user"] for c in emu.api_calls("users.info")] == [GUEST], "looked up once, then cached"
    assert emu.downloads() == [] and emu.uploads() == []


def test_a_guests_shortcut_is_refused_privately_though_its_user_has_no_team_id(bot, emu):
    emu.add_user(GUEST, PARTNER)
    photo = emu.add_file(jpeg_bytes(seed=905), "team.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    payload = emu.message_action_payload(posted, CHANNEL, GUEST)
    assert "team_id" not in payload["user"]

    emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert note.ephemeral and note.text == OTHER_TEAM
    assert emu.downloads(photo["id"]) == [] and emu.uploads() == []


def test_an_enterprise_org_id_as_user_team_is_resolved_to_the_users_workspace(bot, emu):
    """In Slack Connect `user_team` may be an Enterprise Grid org id (bolt-python's test_internals samples):
    not another team, just not a team id. users.info says which workspace the author is in."""
    photo = emu.add_file(jpeg_bytes(seed=906), "ours.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    posted["user_team"] = "E0OURORG"

    emu.send_event(bot.events_url, posted)
    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert len(answer.files) == 5
    assert [c.params["user"] for c in emu.api_calls("users.info")] == [ALICE]


def test_when_the_users_team_cannot_be_learned_the_bot_refuses(bot, emu):
    emu.forget_user(ALICE)  # users.info: user_not_found
    photo = emu.add_file(jpeg_bytes(seed=907), "who.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    payload = emu.message_action_payload(posted, CHANNEL, ALICE)

    emu.send_event(bot.events_url, posted)
    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)
    emu.send_interaction(bot.events_url, payload)
    note = emu.wait_for_response(payload["response_url"], timeout=15)

    assert reply.text == CANNOT_CHECK_USER and note.text == CANNOT_CHECK_USER
    assert emu.downloads(photo["id"]) == [] and emu.uploads() == []


# ---- 4. a thread's parent is not in a thread ------------------------------------------------------------

def test_a_button_on_a_top_level_answer_with_replies_answers_through_the_response_url(indexed, emu):
    """Link mode, in a public channel the bot is not in: only the response_url reaches it. Once someone
    replied, Slack sends the answer with thread_ts equal to its own ts; that is not a thread reply."""
    emu.add_conversation("C0OPEN", "public", member=False)
    settings = with_settings(indexed, public_base_url="https://findimage.example.org", url_signing_key="k" * 32)
    with serve_bot(settings) as running:
        ack = emu.send_slash_command(running.events_url, text="stage with red lights", user_id=ALICE,
                                     channel_id="C0OPEN")
        answer = emu.wait_for_response(ack.response_url, containing="searched the archive", timeout=15)
        emu.user_message("C0OPEN", "where was this?", BOB, thread_ts=answer.ts)
        click = emu.block_actions_payload(answer, "more_like_this:1", BOB)
        assert click["message"]["thread_ts"] == click["message"]["ts"] == answer.ts
        emu.send_interaction(running.events_url, click)
        more = emu.wait_for_response(click["response_url"], timeout=15)

    assert not more.ephemeral and more.visible_text.startswith(f"<@{BOB}> asked for more like")
    assert more.thread_ts is None and emu.api_calls("chat.postMessage") == []
    assert "image" in json.dumps(more.blocks)


# ---- 5. deleted or hidden files -------------------------------------------------------------------------

def test_the_shortcut_on_a_message_whose_file_was_deleted_says_so(bot, emu):
    old = emu.add_file(jpeg_bytes(seed=908), "old.jpg", user=ALICE)
    hidden = emu.add_file(jpeg_bytes(seed=909), "hidden.jpg", user=ALICE)
    deleted_post = emu.post_user_message_with_files(CHANNEL, [old], user=ALICE, file_access="check_file_info")
    hidden_post = emu.post_user_message_with_files(CHANNEL, [hidden], user=ALICE, file_access="check_file_info")
    emu.delete_file(old["id"])
    emu.delete_file(hidden["id"], hidden=True)
    on_deleted = emu.message_action_payload(deleted_post, CHANNEL, BOB)
    on_hidden = emu.message_action_payload(hidden_post, CHANNEL, BOB)

    emu.send_interaction(bot.events_url, on_deleted)
    emu.send_interaction(bot.events_url, on_hidden)
    notes = [emu.wait_for_response(p["response_url"], timeout=15) for p in (on_deleted, on_hidden)]

    assert [n.text for n in notes] == [FILE_GONE, FILE_GONE]
    assert all(n.ephemeral for n in notes)
    # The two clicks are answered at once, in whichever order their threads get there.
    assert sorted(c.response["error"] for c in emu.api_calls("files.info")) == ["file_deleted", "file_not_found"]
    assert emu.downloads() == [] and emu.uploads() == []


def test_the_look_ups_are_cached_for_a_while_and_at_most_so_many():
    clock = FakeClock(0.0)
    cache = BoundedCache(60.0, max_entries=2, clock=clock)
    for user, team in (("U1", "T1"), ("U2", "T2"), ("U3", "T3")):
        cache.put(user, team)

    assert [cache.get(u) for u in ("U1", "U2", "U3")] == [None, "T2", "T3"], "the oldest is dropped"
    clock.advance(60.0)
    assert cache.get("U3") is None, "and every answer expires"

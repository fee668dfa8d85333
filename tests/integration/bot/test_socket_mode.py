"""Socket Mode end to end: `python -m bot` with SLACK_APP_TOKEN connects out to (emulated) Slack over a
WebSocket, as it would from behind a firewall, and answers commands and posted photos."""
from __future__ import annotations

import sys

import pytest
from bot_support import (
    ALICE,
    BOB,
    CHANNEL,
    BotProcess,
    assert_answers_held,
    buttons_post,
    held_work,
    process_env,
    slack_env,
    titles,
)
from photos import jpeg_bytes

from bot.app import create_app
from findimage.backends import open_remembered
from findimage.records import Posted


@pytest.fixture
def socket_ping_seconds() -> str | None:
    """FINDIMAGE_SOCKET_PING_SECONDS of the `socket_bot` (None: the default); a test parametrizes it."""
    return None


@pytest.fixture
def socket_bot(indexed, env, emu, tmp_path, socket_ping_seconds):
    ping = {"FINDIMAGE_SOCKET_PING_SECONDS": socket_ping_seconds} if socket_ping_seconds else {}
    values = process_env({**env, **slack_env(emu)}, SLACK_APP_TOKEN=emu.app_token, SLACK_SIGNING_SECRET="",
                         PYTHONUNBUFFERED="1", **ping)
    bot = BotProcess([sys.executable, "-m", "bot"], values, cwd=tmp_path)
    try:
        emu.wait_for_socket_client(timeout=90)
        bot.wait_for_line("connected over Socket Mode")
        yield bot
    finally:
        bot.stop()


def test_over_socket_mode_a_command_and_a_posted_photo_are_answered_once_each(socket_bot, emu):
    command_ack = emu.socket_slash_command("stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    results = emu.wait_for_upload(CHANNEL, timeout=20)

    photo = emu.add_file(jpeg_bytes(seed=600), "firewall.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    emu.socket_event(posted, event_id="Ev0SOCKET")
    reply = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=20)
    emu.socket_event(posted, event_id="Ev0SOCKET", retry_attempt=1)
    emu.socket_event(emu.bot_message_event(CHANNEL, files=reply))
    help_ack = emu.socket_slash_command("help", user_id=ALICE, channel_id=CHANNEL)
    barrier = emu.post_user_message_with_files(CHANNEL, [emu.add_file(jpeg_bytes(seed=601), "b.jpg")], user=ALICE)
    emu.socket_event(barrier)
    emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=20)

    assert command_ack.payload == {"text": "Searching the archive for `stage with red lights`…"}
    assert "`/findimage a snow covered mountain`" in help_ack.payload["text"]
    assert results.initial_comment.startswith(f"<@{ALICE}> searched the archive") and len(results.files) == 5
    assert reply.initial_comment.startswith("Archive images most similar to `firewall.jpg`")
    assert len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 1, "the retry was not answered again"
    assert len(emu.uploads()) == 3, "the bot's own upload was not answered"
    assert emu.api_calls("apps.connections.open")[0].token == emu.app_token
    assert socket_bot.stop() == 0, socket_bot.output
    assert "will be unused" not in socket_bot.output, "no warning an admin cannot act on"


def test_over_socket_mode_every_ack_is_sent_while_the_answers_wait(indexed, emu):
    """The bot's app and Socket Mode handler as `findimage bot` runs them, in this process with its
    answers held: the command, the posted photo and the shortcut are acked before any answer starts."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    with held_work() as work:
        handler = SocketModeHandler(create_app(indexed, work=work), emu.app_token)
        handler.connect()
        try:
            emu.wait_for_socket_client(timeout=30)
            command_ack = emu.socket_slash_command("stage with red lights", user_id=ALICE, channel_id=CHANNEL)
            photo = emu.add_file(jpeg_bytes(seed=610), "held.jpg", user=ALICE)
            posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
            event_ack = emu.socket_event(posted)
            shortcut_ack = emu.socket_interaction(emu.message_action_payload(posted, CHANNEL, BOB))

            assert command_ack.payload == {"text": "Searching the archive for `stage with red lights`…"}
            assert event_ack.envelope is not None and shortcut_ack.envelope is not None
            assert_answers_held(work, emu, 3)
            assert emu.downloads(photo["id"]) == []
            work.release()
            emu.wait_for_upload(CHANNEL, thread_ts=None, timeout=20)
            emu.wait_for(lambda: len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 2, 20,
                         "the posted photo's answer and the shortcut's, both in its thread")
        finally:
            handler.close()


@pytest.mark.parametrize("socket_ping_seconds", ["2"])
def test_the_bot_reconnects_after_the_connection_drops_and_answers_the_next_command(socket_bot, emu):
    opened = len(emu.api_calls("apps.connections.open"))  # the start's token check and the first connection
    emu.socket_drop()  # closed by the server, no `disconnect` message first
    emu.wait_for(lambda: emu.socket_connections == 0, 10, "the dropped connection to be gone")
    emu.wait_for_socket_client(timeout=60, connections_opened=2)  # slack_sdk checks at every ping interval

    ack = emu.socket_slash_command("stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=20)

    assert ack.payload == {"text": "Searching the archive for `stage with red lights`…"}
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive") and len(answer.files) == 5
    assert len(emu.api_calls("apps.connections.open")) == opened + 1, "a new connection URL was asked for"
    assert emu.socket_connections == 1
    assert socket_bot.stop() == 0, socket_bot.output


@pytest.mark.parametrize("socket_ping_seconds", ["2"])
def test_after_a_silent_network_drop_the_bot_reconnects_by_its_own_pings(socket_bot, emu):
    """No close frame, no FIN: only the client's pings can tell. slack_sdk's client gives up on a
    connection that answered no ping for more than four intervals: with FINDIMAGE_SOCKET_PING_SECONDS=2
    after about 10 s. The test waits up to 40 s, in which the default interval (10 s) could not have."""
    emu.socket_drop(abrupt=True)
    emu.wait_for_socket_client(timeout=40, connections_opened=2)

    emu.socket_slash_command("stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=20)

    assert len(answer.files) == 5
    assert socket_bot.stop() == 0, socket_bot.output


def test_over_socket_mode_a_button_and_the_shortcut_are_acked_and_answered(socket_bot, emu):
    emu.socket_slash_command("k=3 stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    first = emu.wait_for_upload(CHANNEL, timeout=20)
    click = emu.socket_interaction(emu.block_actions_payload(buttons_post(emu), "show_more", BOB))
    more = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 20, "the Show more answer")[0]

    photo = emu.add_file(jpeg_bytes(seed=620), "socket.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    shortcut = emu.socket_interaction(emu.message_action_payload(posted, CHANNEL, BOB))
    reply = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=20)

    assert click.envelope is not None and shortcut.envelope is not None  # acked (before the answers:
    # test_bot_socket_mode holds the answers of the same app and handler)
    assert not set(titles(first)) & set(titles(more)) and len(more.files) == 3
    assert reply.initial_comment.startswith("Archive images most similar to `socket.jpg`")
    assert socket_bot.stop() == 0, socket_bot.output


def test_over_socket_mode_a_remembered_channel_finds_its_posted_photo(socket_bot, emu, indexed):
    emu.socket_slash_command("remember", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_response(containing="turned on remembering", timeout=20)
    photo = emu.add_file(jpeg_bytes(seed=602), "whiteboard sprint planning.jpg", user=BOB)
    emu.socket_event(emu.post_user_message_with_files(CHANNEL, [photo], user=BOB))
    remembered = open_remembered(indexed)
    try:
        stored = Posted(CHANNEL, photo["id"], "", "").image_id  # the posting is written first, then the image
        emu.wait_for(lambda: [p.file_id for p in remembered.registry.posted_in(CHANNEL)] == [photo["id"]]
                     and remembered.store.get(stored) is not None, timeout=30, what="the photo remembered")
    finally:
        remembered.close()
    emu.socket_slash_command("whiteboard sprint", user_id=ALICE, channel_id=CHANNEL)
    shown = f"'slack_file': {{'id': '{photo['id']}'}}"
    emu.wait_for(lambda: any(shown in repr(r.blocks) for r in emu.responses()), timeout=30,
                 what="the remembered photo shown by reference")
    emu.socket_slash_command("whiteboard sprint", user_id=ALICE, channel_id="C0ELSEWHERE")
    emu.wait_for_upload("C0ELSEWHERE", timeout=30)
    assert all(photo["id"] not in repr(r.blocks) for r in emu.responses() if r.channel_id == "C0ELSEWHERE")
    assert all(photo["id"] not in (u.initial_comment or "") for u in emu.uploads("C0ELSEWHERE"))

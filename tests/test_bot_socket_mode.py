"""Socket Mode end to end: `python -m bot` with SLACK_APP_TOKEN connects out to (emulated) Slack over a
WebSocket, as it would from behind a firewall, and answers commands and posted photos."""
from __future__ import annotations

import sys

import pytest

from bot_support import ALICE, CHANNEL, BotProcess, bot_settings, emu, indexed, process_env, slack_env  # noqa: F401
from photos import jpeg_bytes


@pytest.fixture
def socket_bot(indexed, env, emu, tmp_path):
    values = process_env({**env, **slack_env(emu)}, SLACK_APP_TOKEN=emu.app_token, SLACK_SIGNING_SECRET="",
                         PYTHONUNBUFFERED="1")
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
    event_ack = emu.socket_event(posted, event_id="Ev0SOCKET")
    reply = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=20)
    retry_ack = emu.socket_event(posted, event_id="Ev0SOCKET", retry_attempt=1)
    echo_ack = emu.socket_event(emu.bot_message_event(CHANNEL, files=reply))
    help_ack = emu.socket_slash_command("help", user_id=ALICE, channel_id=CHANNEL)
    barrier = emu.post_user_message_with_files(CHANNEL, [emu.add_file(jpeg_bytes(seed=601), "b.jpg")], user=ALICE)
    emu.socket_event(barrier)
    emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=20)

    assert max(a.elapsed for a in (command_ack, event_ack, retry_ack, echo_ack, help_ack)) < 3
    assert command_ack.payload == {"text": "Searching the archive for “stage with red lights”…"}
    assert "`/findimage a snow covered mountain`" in help_ack.payload["text"]
    assert results.initial_comment.startswith(f"<@{ALICE}> searched the archive") and len(results.files) == 5
    assert reply.initial_comment.startswith("Archive images most similar to *firewall.jpg*")
    assert len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 1, "the retry was not answered again"
    assert len(emu.uploads()) == 3, "the bot's own upload was not answered"
    assert emu.api_calls("apps.connections.open")[0].token == emu.app_token
    assert socket_bot.stop() == 0, socket_bot.output

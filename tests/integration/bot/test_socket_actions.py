"""Interactivity over Socket Mode: buttons and the message shortcut arrive in `interactive` envelopes."""
from __future__ import annotations

from bot_support import ALICE, BOB, CHANNEL, bot_settings, emu, indexed  # noqa: F401
from photos import jpeg_bytes
from test_bot_actions import buttons_post, titles
from test_bot_socket_mode import socket_bot  # noqa: F401


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
    assert reply.initial_comment.startswith("Archive images most similar to *socket.jpg*")
    assert socket_bot.stop() == 0, socket_bot.output

"""A request's decisions are each made once on its way from the door to the answer: the allowlist is read
at the ack and the answer goes on from there, and whether the channel's images are remembered is read from
the registry once per query."""
from __future__ import annotations

import threading

from bot_support import ALICE, BOB, CHANNEL, serve_bot, with_settings
from photos import jpeg_bytes

from bot.channels import ChannelPolicy


def counted_calls(monkeypatch, owner, name: str) -> list[str]:
    """Each call of `owner.name` from here on, by the name of the thread that made it."""
    calls: list[str] = []
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def test_a_command_and_its_buttons_read_the_allowlist_once_each(indexed, emu, monkeypatch):
    with serve_bot(with_settings(indexed, channels=(CHANNEL,))) as bot:
        allowlist = counted_calls(monkeypatch, ChannelPolicy, "enabled_in")
        emu.send_slash_command(bot.events_url, text="k=2 stage with red lights", user_id=ALICE, channel_id=CHANNEL)
        emu.wait_for_upload(CHANNEL, timeout=15)
        buttons = emu.wait_for(lambda: next((r for r in emu.responses() if r.blocks), None), 15, "the buttons")
        answered_command = len(allowlist)

        emu.send_interaction(bot.events_url, emu.block_actions_payload(buttons, "show_more", ALICE))
        emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "the next page")

    assert answered_command == 1, "the ack reads it; the answer goes on from the ack's reading"
    assert len(allowlist) == 2, "the click is read once too"


def test_a_query_in_a_remembered_channel_reads_the_registry_once(bot, emu, monkeypatch):
    emu.send_slash_command(bot.events_url, text="remember", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_response(containing="turned on remembering", timeout=15)
    photo = emu.add_file(jpeg_bytes(seed=907), "whiteboard sprint.jpg", user=BOB)
    event = emu.post_user_message_with_files(CHANNEL, [photo], user=BOB)
    assert emu.send_event(bot.events_url, event).status == 200
    emu.wait_for_upload(CHANNEL, thread_ts=event["ts"], timeout=20)
    emu.clear_records()

    registry = bot.searcher.remembered.registry
    reads = counted_calls(monkeypatch, registry, "channel")
    emu.send_slash_command(bot.events_url, text="whiteboard sprint", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for(lambda: emu.uploads(CHANNEL) or [r for r in emu.responses() if r.blocks], 20, "the answer")

    answering = [name for name in reads if name.startswith("findimage-answer")]  # not the backfill's own
    assert len(answering) == 1, "whether the channel is remembered is read once for the query"

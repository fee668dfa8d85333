"""Hostile pictures meet the running bot: decode bombs posted in a channel, and an indexed folder swapped
for a link to same-named pictures outside the archive."""
from __future__ import annotations

import shutil

from bot_support import ALICE, CHANNEL
from hostile_images import claims_progressive_jpeg, is_red, red_pictures_at, tiled_tiff


def test_two_bombs_posted_at_once_are_each_answered_with_one_sentence(bot, emu):
    progressive = emu.add_file(claims_progressive_jpeg(24_000, 24_000), "huge.jpg", user=ALICE)
    tile = emu.add_file(tiled_tiff(64, 64, (32_768, 32_768)), "tile.tif", "image/tiff", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [progressive, tile], user=ALICE)
    emu.send_event(bot.events_url, posted)
    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=30)
    assert "I could not read `huge.jpg` as a picture (image needs too much memory to decode safely" in reply.text
    assert "I could not read `tile.tif` as a picture (TIFF claims 32,768 x 32,768 pixel tiles" in reply.text
    assert emu.uploads(CHANNEL, thread_ts=posted["ts"]) == []


def test_a_folder_swapped_for_a_link_to_same_named_pictures_outside_is_never_uploaded(bot, indexed, emu, tmp_path):
    nature = indexed.archive / "nature"
    names = sorted(p.name for p in nature.iterdir())
    outside = tmp_path / "elsewhere"
    red_pictures_at(outside, names)
    shutil.rmtree(nature)
    nature.symlink_to(outside, target_is_directory=True)

    emu.send_slash_command(bot.events_url, text="k=10 mountain", channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=15)

    assert answer.files, "the rest of the archive is still answered"
    assert not any(f.file.get("alt_txt", "").startswith("nature/") or "nature/" in f.title for f in answer.files)
    assert not any(is_red(content) for content in answer.contents), "nothing from outside was uploaded"
    assert "nature/" not in answer.initial_comment

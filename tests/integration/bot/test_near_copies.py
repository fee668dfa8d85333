"""A picture posted again: a near-identical copy of an archive image is answered with that image first, as
already in the archive; in a remembered channel, a picture posted there before is recognised as a repost,
with who posted it, when and a link to it, and never from another channel. Generated pictures
(tests/support/near_copies.py) and random-weight models: what recognises them is the pixels."""
from __future__ import annotations

import re

from bot_support import ALICE, BOB, CHANNEL, serve_bot
from es_support import both_stores
from near_copies import case, write_archive

from findimage.errors import FindimageError
from findimage.records import Posted
from indexer.run import index_once

GENERAL = "C0GENERAL"


def post(emu, bot, data: bytes, name: str, channel: str = CHANNEL, user: str = ALICE):
    """A picture posted in the channel; the bot's answer in its thread, and the file."""
    photo = emu.add_file(data, name, user=user)
    event = emu.post_user_message_with_files(channel, [photo], user=user)
    assert emu.send_event(bot.events_url, event).status == 200
    return emu.wait_for_upload(channel, thread_ts=event["ts"], timeout=20), photo


@both_stores
def test_a_posted_copy_of_an_archive_image_is_answered_as_already_in_the_archive(bot_settings, emu):
    groups = write_archive(bot_settings.archive, count=1, leave_out=("jpeg q50",))
    [group] = groups.values()
    index_once(bot_settings, progress=False)
    with serve_bot(bot_settings) as bot:
        answer, _ = post(emu, bot, case(0, scale=0.5).copies["jpeg q50"], "IMG_0815.jpg")
        fresh, _ = post(emu, bot, case(5, scale=0.5).original, "new.jpg")

    lines = answer.initial_comment.splitlines()
    already = re.fullmatch(r"This picture is already in the archive: `(.+)`", lines[1])
    assert already is not None, lines[:3]
    assert already.group(1) in group
    assert lines[2].startswith("*1.* `") and f"`{already.group(1)}`" in lines[2] and "near copies at" in lines[2]
    shown = [re.fullmatch(r"\d+\. (\S+) · .*", f.title).group(1) for f in answer.files]
    assert shown[0] == already.group(1) and not set(shown[1:]) & set(group), "the copies are one hit"
    assert "already in the archive" not in fresh.initial_comment


def command(emu, bot, text, channel=CHANNEL, user=ALICE):
    return emu.send_slash_command(bot.events_url, text=text, user_id=user, channel_id=channel)


def remember(emu, bot, channel: str) -> None:
    emu.clear_records()
    command(emu, bot, "remember", channel)
    emu.wait_for_response(containing="turned on remembering", timeout=15)


def wait_remembered(emu, bot, file_id: str, channel: str) -> None:
    remembered = bot.searcher.remembered

    def searchable() -> bool:
        try:
            image_id = Posted(channel, file_id, "", "").image_id
            return bool(remembered.store.fingerprints_of([image_id]))
        except FindimageError:
            return False

    emu.wait_for(searchable, timeout=20, what=f"{file_id} remembered")


@both_stores
def test_a_picture_posted_again_in_its_channel_is_a_repost_there_and_nowhere_else(bot, emu):
    emu.add_conversation(GENERAL, "public")
    remember(emu, bot, CHANNEL)
    remember(emu, bot, GENERAL)
    pictures = case(3, scale=0.5)
    _, first = post(emu, bot, pictures.original, "team photo.jpg", user=BOB)
    wait_remembered(emu, bot, first["id"], CHANNEL)

    again, _ = post(emu, bot, pictures.copies["repost: cropped, resized, q40"], "team photo (1).jpg")
    said = again.initial_comment
    assert f"Posted here before by <@{BOB}> on " in said
    assert f"<{first['permalink']}|open in Slack>" in said.split("Posted here before", 1)[1].splitlines()[0]

    elsewhere, _ = post(emu, bot, pictures.copies["jpeg q50"], "team photo.jpg", channel=GENERAL)
    assert "Posted here before" not in elsewhere.initial_comment and first["id"] not in elsewhere.initial_comment
    other, _ = post(emu, bot, case(4, scale=0.5).original, "another.jpg")
    assert "Posted here before" not in other.initial_comment


def test_findimage_duplicates_tells_only_the_asker_the_archives_copies(bot_settings, emu):
    groups = write_archive(bot_settings.archive, count=1)
    [group] = groups.values()
    index_once(bot_settings, progress=False)
    with serve_bot(bot_settings) as bot:
        command(emu, bot, "duplicates")
        report = emu.wait_for_response(containing="group of near-identical images", timeout=20)
        command(emu, bot, "duplicates in:lookalikes")
        none = emu.wait_for_response(containing="No near-identical images", timeout=20)
        refused = command(emu, bot, "duplicates of the summer party")

    assert report.ephemeral and none.ephemeral
    text = report.visible_text
    copies = len(group) - 1
    assert text.startswith(f"*1 group of near-identical images* in the archive: {copies} extra "
                           + ("copy takes " if copies == 1 else "copies take "))
    assert all(f"`{path}`" in text for path in group) and "lookalikes/" not in text
    assert "`lookalikes`" in none.visible_text
    assert refused.status == 200 and "`duplicates in:events/2024`" in refused.body  # the ack, only to the asker


def test_a_german_user_gets_the_duplicates_report_and_already_in_the_archive_in_german(bot_settings, emu):
    emu.add_user(ALICE, locale="de-DE")
    groups = write_archive(bot_settings.archive, count=1, leave_out=("jpeg q50",))
    [group] = groups.values()
    index_once(bot_settings, progress=False)
    with serve_bot(bot_settings) as bot:
        ack = command(emu, bot, "duplicates")
        report = emu.wait_for_response(containing="nahezu identischer Bilder", timeout=20)
        answer, _ = post(emu, bot, case(0, scale=0.5).copies["jpeg q50"], "IMG_0815.jpg")

    assert "Ich suche nahezu identische Bilder im Archiv" in ack.body
    copies = len(group) - 1
    assert report.visible_text.startswith(
        f"*1 Gruppe nahezu identischer Bilder* im Archiv: {copies} zusätzliche "
        + ("Kopie belegt " if copies == 1 else "Kopien belegen "))
    assert re.fullmatch(r"Dieses Bild ist bereits im Archiv: `(.+)`", answer.initial_comment.splitlines()[1])
    assert "nahezu identische Kopien unter" in answer.initial_comment.splitlines()[2]

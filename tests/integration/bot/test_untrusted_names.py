"""Whoever fills the archive or posts in a channel chooses names, titles and the text in pictures: in the
bot's answers they stay one line of plain text, and cannot add lines, links, mentions, formatting, or
control and right-to-left characters of their own (bot/untrusted.py)."""
from __future__ import annotations

import dataclasses

from bot_support import ALICE, BOB, CHANNEL, serve_bot, with_settings
from mrkdwn_reading import read_mrkdwn
from photos import jpeg_bytes, save_photo
from slack_sdk.models.blocks import Block

from bot.delivery import BUTTONS_TEXT
from findimage.backends import open_store
from findimage.records import ReadText, TextLine, image_id_for
from indexer.run import index_once

# A file name holds no "/" (so the link is a mailto: one) and ends in an image's extension to be indexed
FORGED = "photo\n*IT notice*: mail your password to <mailto:it@evil.example|it@slack.com>\n.jpg"
FOLDER = "notices\u202e"  # a right-to-left override in the folder's name


def assert_plain_one_line(text: str) -> None:
    assert read_mrkdwn(text).lines == [text] and read_mrkdwn(text).hidden == [], repr(text)


def the_forged_line(mrkdwn: str) -> str:
    """The one line of an answer that shows the forged name; its link, bold and newline neutralised."""
    reading = read_mrkdwn(mrkdwn)
    shown = [line for line in reading.lines if "mail your password" in line]
    assert len(shown) == 1, mrkdwn
    assert reading.tokens == [f"<@{ALICE}>"], "only the bot's own mention of who asked"
    assert not any("IT notice" in styled for styled in reading.styled)
    assert reading.urls == [] and reading.hidden == [] and reading.mentions == []
    return shown[0]


def test_an_archive_file_named_with_a_newline_and_a_link_is_one_plain_line_of_the_answer(bot_settings, emu):
    save_photo(bot_settings.archive / FOLDER / FORGED, seed=31)
    assert index_once(bot_settings, progress=False).added == 8
    with serve_bot(bot_settings) as bot:
        emu.send_slash_command(bot.events_url, text="IT notice mail password", user_id=ALICE, channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=15)
    linked = with_settings(bot_settings, public_base_url="https://findimage.example.org", url_signing_key="k" * 32)
    with serve_bot(linked) as bot:
        ack = emu.send_slash_command(bot.events_url, text="IT notice mail password", user_id=ALICE,
                                     channel_id="C0LINKS")
        reply = emu.wait_for_response(ack.response_url, containing="searched the archive", timeout=15)

    line = the_forged_line(answer.initial_comment)
    assert line.startswith("*") and "mail your password to &lt;mailto:it@evil.example|it@slack.com&gt;" in line
    assert "notices\ufffd/photo\ufffd*IT notice*" in line and "slack.com&gt;\ufffd.jpg` · " in line
    for uploaded in answer.files:
        assert_plain_one_line(uploaded.title)
        assert_plain_one_line(uploaded.name)
    # with image links: the same line in the section and in the notification text, valid Block Kit
    assert the_forged_line(reply.text) == line
    sections = [b["text"] for b in reply.blocks if b["type"] == "section"]
    assert [the_forged_line(s["text"]) for s in sections] == [line] and sections[0]["verbatim"] is True
    for image in (b for b in reply.blocks if b["type"] == "image"):
        assert_plain_one_line(image["title"]["text"])
        assert_plain_one_line(image["alt_text"])
    for block in reply.blocks:
        Block.parse(block).validate_json()


def test_text_read_from_an_image_is_quoted_without_escape_nul_or_right_to_left_characters(bot_settings, emu):
    index_once(bot_settings, progress=False)
    writer = open_store(bot_settings, writer=True)
    board = writer.get(image_id_for("events/2024/stage-2.jpg"))
    read = "\x1b[2J\x00<!channel> URGENT\u202e: disk quota exceeded \x1b]8;;https://evil.example\x07here\x1b]8;;\x07"
    writer.set_texts([(board.image_id, board.sha256, ReadText("read", (TextLine(read, ((0, 0),) * 4, 0.9),)))])
    writer.close()
    with serve_bot(dataclasses.replace(bot_settings, ocr=True)) as bot:
        emu.send_slash_command(bot.events_url, text="disk quota exceeded", user_id=ALICE, channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=15)

    comment = answer.initial_comment
    reading = read_mrkdwn(comment)
    (quote,) = reading.quotes
    assert "*disk* *quota* *exceeded*" in quote and "URGENT" in quote
    assert not {"\x1b", "\x00", "\x07", "\u202e"} & set(comment) and reading.hidden == []
    assert reading.tokens == [f"<@{ALICE}>"] and reading.mentions == []
    assert reading.lines[reading.lines.index(quote) - 1].startswith("*"), "the quote follows its match"


def test_a_remembered_image_titled_with_an_at_channel_does_not_mention_the_channel(bot, emu):
    emu.send_slash_command(bot.events_url, text="remember", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_response(containing="turned on remembering", timeout=15)
    title = "<!channel> free pizza\n*now* in <https://evil.example|the kitchen> @here"
    photo = emu.add_file(jpeg_bytes(seed=907), "pizza.jpg", user=BOB, title=title)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=BOB)
    emu.send_event(bot.events_url, posted)
    emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=20)
    remembered = bot.searcher.remembered
    emu.wait_for(lambda: remembered.store.count() == 1, timeout=20, what="the photo remembered")
    emu.clear_records()

    emu.send_slash_command(bot.events_url, text="free pizza kitchen", user_id=ALICE, channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=15)
    buttons = emu.wait_for_response(containing=BUTTONS_TEXT, timeout=15)

    reading = read_mrkdwn(answer.initial_comment)
    (line,) = [line for line in reading.lines if "posted by" in line]
    assert "`&lt;!channel&gt; free pizza\ufffd*now* in &lt;https://evil.example|the kitchen&gt; \uff20here`" in line
    assert reading.tokens == [f"<@{ALICE}>", f"<@{BOB}>", f"<{photo['permalink']}|open in Slack>"]
    assert reading.mentions == [] and reading.hidden == []
    assert not any("now" in styled for styled in reading.styled)
    # shown by reference to Slack's file: its title and alt text are plain text, on one line
    (image,) = [b for b in buttons.blocks if b["type"] == "image"]
    assert image["slack_file"] == {"id": photo["id"]} and image["title"]["type"] == "plain_text"
    assert_plain_one_line(image["title"]["text"])
    assert_plain_one_line(image["alt_text"])
    assert buttons.text == BUTTONS_TEXT

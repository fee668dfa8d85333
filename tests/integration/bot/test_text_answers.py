"""Text in images in the bot's answers: the matching line quoted under the image, the query's words in
bold, and the read text escaped like any untrusted text (a screenshot cannot ping the channel)."""
from __future__ import annotations

import dataclasses

from bot_support import CHANNEL, serve_bot
from rendered_text import screenshot

from indexer.run import index_once


def test_an_answer_quotes_the_line_that_matched_with_the_query_words_in_bold(bot_settings, emu):
    settings = dataclasses.replace(bot_settings, ocr=True)
    alert = screenshot("Alerts", ["<!channel> ERROR: disk quota exceeded on volume /srv/data"], seed=3)
    alert.image.save(settings.archive / "Screenshot 7.png")
    assert index_once(settings, progress=False).text_read == 8
    with serve_bot(settings) as bot:
        emu.send_slash_command(bot.events_url, text="disk quota exceeded", channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=30)

    lines = answer.initial_comment.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("*1.*"))
    assert "Screenshot 7.png" in lines[first] and lines[first].endswith("_text matched_")
    assert lines[first + 1].startswith(">") and "*disk* *quota* *exceeded*" in lines[first + 1]
    assert "<!" not in answer.initial_comment, "the read text is escaped"

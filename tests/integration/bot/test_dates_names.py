"""`after:` and `before:` in Slack, and replies that show when a photo was taken and where its copies are."""
from __future__ import annotations

import shutil

import pytest
from bot_support import CHANNEL, serve_bot
from photos import save_photo
from PIL import Image

from bot.options import IN_SLACK
from bot.replies import usage_text
from findimage.config import Settings
from findimage.i18n import english
from findimage.query import Filters, Query, QueryError, read_command
from indexer.run import index_once


@pytest.mark.parametrize("typed, expected", [
    ("after:2024-05 before:2024-07 Sommerfest",
     Query(5, "Sommerfest", filters=Filters(None, "2024-05-01T00:00:00", "2024-07-01T00:00:00"))),
    ("k=3 stage AFTER:2024 in:events", Query(3, "stage", filters=Filters("events", "2024-01-01T00:00:00", None))),
    ("before:2023-12-24 tree", Query(5, "tree", filters=Filters(None, None, "2023-12-24T00:00:00"))),
    ("meet after:work", None),
])
def test_date_options_are_taken_out_of_the_description(typed, expected):
    if expected is None:
        with pytest.raises(QueryError, match=r"`after:work` is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, "
                                             r"e.g. `after:2024-05`."):
            read_command(typed, Settings(), IN_SLACK)
    else:
        assert read_command(typed, Settings(), IN_SLACK) == expected


@pytest.mark.parametrize("typed, complaint", [
    ("after:2024-13 cats", "`after:2024-13` is not a date"),
    ("before:June cats", "`before:June` is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. `before:2024-05`."),
    ("after:2024 after:2023 cats", "Give `after:` at most once"),
    ("after:2024-07 before:2024-05 cats", "put the earlier date in `after:`, e.g. `after:2024-05 before:2024-07`"),
    ("after:2024-05", "Add what to look for"),
])
def test_date_option_mistakes_say_how_to_fix_them(typed, complaint):
    with pytest.raises(QueryError, match=complaint.replace("(", r"\(").replace(".", r"\.")):
        read_command(typed, Settings(), IN_SLACK)


def test_the_usage_lists_the_date_options_with_an_example():
    usage = usage_text(english(), 5)
    assert "`after:2024-05 before:2024-07`" in usage and "/findimage after:2024-05 before:2024-07 " in usage


def exif(original: str) -> Image.Exif:
    data = Image.Exif()
    data.get_ifd(0x8769)[0x9003] = original
    return data


def test_a_dated_command_shows_only_that_time_with_dates_and_copies(bot_settings, emu):
    archive = bot_settings.archive
    save_photo(archive / "2024-06 Sommerfest/crowd.jpg", seed=11, exif=exif("2024:06:14 18:03:00"))
    save_photo(archive / "2024-06 Sommerfest/stage.jpg", seed=12, exif=exif("2024:06:15 20:00:00"))
    save_photo(archive / "2023 Sommerfest/crowd.jpg", seed=13, exif=exif("2023:06:10 18:00:00"))
    (archive / "shared").mkdir()
    shutil.copyfile(archive / "2024-06 Sommerfest/crowd.jpg", archive / "shared/crowd-copy.jpg")
    index_once(bot_settings, progress=False)
    with serve_bot(bot_settings) as bot:
        emu.send_slash_command(bot.events_url, text="after:2024-05 before:2024-07 k=5 Sommerfest", channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=15)
    comment = answer.initial_comment
    assert len(answer.files) == 2, comment
    assert "`2024-06 Sommerfest/stage.jpg` · 2024-06-15" in comment
    assert "· 2024-06-14" in comment and " · also at `" in comment and "2023 Sommerfest" not in comment

"""Words of archive paths and dates of photos, as the stores index them and queries use them."""
from __future__ import annotations

import io
from datetime import datetime

import pytest
from photos import photo
from PIL import Image

from findimage.dates import parse_exif_date, taken_of
from findimage.fusion import collapse_copies
from findimage.names import name_words, query_words
from findimage.query import QueryError, date_start, query_filters
from findimage.records import Match


@pytest.mark.parametrize("path, words", [
    ("2024-06 Sommerfest/crowd-01.jpg", "2024 06 sommerfest crowd 01"),
    ("Kundenbesuch_Bosch_03.jpg", "kundenbesuch bosch 03"),
    ("Messe Hannover 2023/IMG_4711.JPG", "messe hannover 2023 4711"),
    ("Ärger.jpg", "arger"),
    ("team/Straße.über.png", "team strasse uber"),
    ("events/summerParty2024/DSC01234.jpeg", "events summer party 2024 01234"),
    ("a/HTMLPage.tif", "html page"),
    ("Ärger/ÄrgerÜberblick_ÖLTank.png", "arger arger uberblick ol tank"),
])
def test_name_words_split_fold_and_drop_the_extension(path, words):
    assert name_words(path) == words


def test_query_words_are_cut_like_names():
    assert query_words("Ärger ärger arger") == ["arger"]
    assert query_words("Bosch") == ["bosch"] and query_words("a snowy mountain") == ["snowy", "mountain"]
    assert query_words("   ") == []


@pytest.mark.parametrize("raw, expected", [
    ("2024:06:14 18:03:00", datetime(2024, 6, 14, 18, 3)),
    (b"2019:12:31 23:59:59\x00", datetime(2019, 12, 31, 23, 59, 59)),
    ("0000:00:00 00:00:00", None), ("1850:01:01 00:00:00", None), ("2999:01:01 00:00:00", None),
    ("2024:13:01 00:00:00", None), ("    :  :     :  :  ", None), ("", None), (None, None), (42, None),
])
def test_exif_dates_that_make_no_sense_are_ignored(raw, expected):
    assert parse_exif_date(raw) == expected


def exif_jpeg(tags: dict[int, str], ifd_tags: dict[int, str] | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif.update(tags)
    if ifd_tags:
        exif.get_ifd(0x8769).update(ifd_tags)
    out = io.BytesIO()
    photo(1, (64, 48)).save(out, "JPEG", exif=exif)
    return Image.open(io.BytesIO(out.getvalue())).getexif()


def test_the_best_exif_date_wins_and_mtime_is_the_last_resort():
    mtime = datetime(2021, 3, 4, 5, 6, 7).timestamp()
    assert taken_of(exif_jpeg({0x0132: "2020:01:01 00:00:00"}, {0x9003: "2024:06:14 18:03:00",
                                                               0x9004: "2023:01:01 00:00:00"}), mtime) == (
        "2024-06-14T18:03:00", "exif_original")
    assert taken_of(exif_jpeg({0x0132: "2020:01:01 00:00:00"}, {0x9004: "2023:01:01 00:00:00"}), mtime) == (
        "2023-01-01T00:00:00", "exif_digitized")
    assert taken_of(exif_jpeg({0x0132: "2020:01:01 00:00:00"}, {0x9003: "0000:00:00 00:00:00"}), mtime) == (
        "2020-01-01T00:00:00", "exif_datetime")
    assert taken_of(exif_jpeg({}, {0x9003: "1800:01:01 00:00:00"}), mtime) == ("2021-03-04T05:06:07", "mtime")
    assert taken_of(None, mtime) == ("2021-03-04T05:06:07", "mtime")


def test_date_bounds_start_their_year_month_or_day():
    assert date_start("2024") == "2024-01-01T00:00:00"
    assert date_start("2024-05") == "2024-05-01T00:00:00"
    assert date_start("2024-05-14") == "2024-05-14T00:00:00"
    for bad in ("2024-13", "24", "May 2024", "2024-02-30", ""):
        with pytest.raises(QueryError, match=r"is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. --after 2024-05"):
            query_filters(after=bad)
    with pytest.raises(QueryError, match="the after date must come first"):
        query_filters(after="2024-07-01T00:00:00", before="2024-05-01T00:00:00")


def m(image_id: str, sha: str = "", path: str | None = None) -> Match:
    return Match(image_id, image_id, path or f"{image_id}.jpg", 0.5, sha)


def test_identical_copies_collapse_into_the_best_ranked_one():
    shown = collapse_copies([m("a", "s1"), m("b", "s2"), m("c", "s1", "copies/a.jpg"), m("d")])
    assert [x.image_id for x in shown] == ["a", "b", "d"]
    assert shown[0].also_at == ("copies/a.jpg",) and shown[1].also_at == ()

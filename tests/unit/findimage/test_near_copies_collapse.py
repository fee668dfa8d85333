"""Near-identical copies as people meet them: a ranking's copies shown as one hit (a copy of a copy too),
another shot of the scene and a posted picture kept apart; the report's sizes in words."""
from __future__ import annotations

import pytest
from near_copies import as_indexed, case

from findimage.duplicates import Copy, Group, NearCopies, human_bytes, summary_lines, with_near_copy
from findimage.fingerprint import fingerprint
from findimage.records import Match, Posted


@pytest.fixture(scope="module")
def prints() -> dict[str, str]:
    found = case(1, scale=0.5)
    files = {"original": found.original, "caption": found.copies["caption"],
             "cropped left": found.copies["cropped 10% left"], "cropped right": found.copies["cropped 10% right"],
             "look-alike": found.lookalikes["light from the other side"]}
    return {name: fingerprint(as_indexed(data)).to_string() for name, data in files.items()}


def match(name: str, posted: bool = False) -> Match:
    return Match(name, name, f"{name}.jpg", 0.5, posted=Posted("C1", name, "1700000000.0", "U1") if posted else None)


def collapsed(names: list[str], prints: dict[str, str], posted: set[str] = frozenset()) -> list[Match]:
    """What a search shows of this ranking: its copies merged into the first of their picture."""
    near, kept = NearCopies(prints), []
    for name in names:
        found = match(name, name in posted)
        at = near.copy_of(found)
        if at is None:
            near.keep(found)
            kept.append(found)
        else:
            kept[at] = with_near_copy(kept[at], found)
            near.merge(at, found)
    return kept


def test_copies_in_a_ranking_are_one_hit_at_the_best_ranked(prints):
    shown = collapsed(["caption", "look-alike", "original", "cropped left", "cropped right"], prints)
    assert [(m.image_id, m.near_copies) for m in shown] == [
        ("caption", ("original.jpg", "cropped left.jpg", "cropped right.jpg")), ("look-alike", ())]


def test_a_picture_posted_in_slack_or_without_a_fingerprint_stays_a_hit_of_its_own(prints):
    shown = collapsed(["original", "caption", "cropped left"], {**prints, "cropped left": ""}, posted={"caption"})
    assert [(m.image_id, m.near_copies) for m in shown] == [("original", ()), ("caption", ()), ("cropped left", ())]


def test_the_report_says_what_the_extra_copies_take():
    groups = [Group((Copy("a/big.jpg", 2_500_000), Copy("b/small.jpg", 400_000), Copy("c/tiny.png", 999)))]
    assert groups[0].extra_bytes == 400_999
    assert summary_lines(groups, "a") == [
        "1 group of near-identical images under a: 2 extra copies take 401.0 kB.",
        "1. 3 copies, 401.0 kB extra:", "   a/big.jpg (2.5 MB)", "   b/small.jpg (400.0 kB)",
        "   c/tiny.png (999 bytes)"]
    lines = summary_lines([Group((Copy("a.jpg", 10), Copy("b.jpg", 10)))] * 3, most=2)
    assert [lines[0], lines[4], lines[-1]] == [
        "3 groups of near-identical images: 3 extra copies take 30 bytes.", "2. 2 copies, 10 bytes extra:",
        "... and 1 more group (`findimage duplicates` lists them all)."]
    assert summary_lines([Group((Copy("a.jpg", 10), Copy("b.jpg", 10)))])[0] == (
        "1 group of near-identical images: 1 extra copy takes 10 bytes.")
    assert summary_lines([]) == ["No near-identical images."]
    assert human_bytes(3_200_000_000) == "3.2 GB"

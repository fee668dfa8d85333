"""One ranking of every candidate a text query's searches found, each judged on every signal: the words of
its name, the words of its text, its CLIP score."""
from __future__ import annotations

from findimage.fusion import fuse
from findimage.names import meaningful, query_words
from findimage.records import Match


def m(path: str, score: float, *lines: str) -> Match:
    return Match(path, path.rsplit("/", 1)[-1], path, score, text_lines=lines)


def words(query: str) -> list[str]:
    return meaningful(query_words(query))  # as search.Searcher cuts a query


def ranked(found: list[Match]) -> list[str]:
    return [x.relative_path for x in found]


# CLIP's candidates for every query: "hub" pictures that score high for anything, then the rest.
CLIP = [m("hubs/crowd.jpg", 0.62), m("hubs/sky.jpg", 0.61), m("misc/lake.jpg", 0.55), m("misc/tree.jpg", 0.54)]


def test_a_query_no_name_or_text_matches_keeps_clip_s_order_exactly():
    assert fuse(CLIP, [], [], words("a quiet evening by the water")) == CLIP
    assert all(x.matched == ("image",) for x in fuse(CLIP, [], [], words("evening")))


def test_a_name_holding_every_query_word_outranks_what_only_clip_found():
    named = m("2022/events/Sommerfest Biergarten/DSC_77001.jpg", 0.51)
    found = fuse(CLIP, [named], [], words("sommerfest biergarten"))
    assert ranked(found) == [named.relative_path, *ranked(CLIP)]
    assert found[0].matched == ("name",) and found[0].score == 0.51, "the score shown stays CLIP's"
    assert ranked(fuse(CLIP, [m("bau/Kellertreppe Umbau.jpg", 0.5)], [], words("Kellertreppe Umbau")))[0] == \
        "bau/Kellertreppe Umbau.jpg"


def test_a_line_of_text_holding_every_word_outranks_what_only_clip_found_and_is_quoted():
    sign = m("photos/DSC_0042.jpg", 0.5, "Bitte freihalten", "NOTAUSGANG LINKS", "notausgang")
    found = fuse(CLIP, [], [sign], words("notausgang links"))
    assert found[0].relative_path == sign.relative_path
    assert found[0].matched == ("text",) and found[0].text_snippet == "NOTAUSGANG LINKS"


def test_partial_matches_rank_below_full_ones_by_how_much_they_match():
    full = m("a/Kellertreppe Umbau 2021.jpg", 0.50)
    two = m("b/Kellertreppe 2021.jpg", 0.52)  # two of the three words
    spread = m("c/DSC_1.jpg", 0.53, "Kellertreppe", "Umbau", "2021")  # all three, but in no one line
    one = m("d/Umbau.jpg", 0.60)
    found = fuse(CLIP, [one, two, full], [spread], words("kellertreppe umbau 2021"))
    assert ranked(found) == [full.relative_path, spread.relative_path, two.relative_path, one.relative_path,
                             *ranked(CLIP)]


def test_clip_decides_among_equal_evidence_and_a_clip_candidate_is_judged_on_its_name_and_text_too():
    bm25_first = m("2022/Sommerfest/a.jpg", 0.40)
    bm25_second = m("2022/Sommerfest/b.jpg", 0.45)
    also_named = m("2022/Sommerfest/hub.jpg", 0.63)  # found by CLIP only: its name still counts
    also_read = m("misc/DSC_2.jpg", 0.58, "Sommerfest 2022")  # found by CLIP only: its text still counts
    found = fuse([also_named, *CLIP, also_read], [bm25_first, bm25_second], [], words("Sommerfest"))
    assert ranked(found[:4]) == [also_named.relative_path, also_read.relative_path, bm25_second.relative_path,
                                 bm25_first.relative_path]
    assert found[0].matched == ("image", "name") and found[1].matched == ("image", "text")
    assert ranked(found[4:]) == ranked(CLIP)


def test_words_match_as_people_type_them_and_candidates_holding_none_are_left_out():
    arger = m("misc/Ärger.jpg", 0.3)
    slide = m("scans/page.png", 0.31, "Inhalt", "Größenordnung und Überblick")
    unrelated = m("scans/other.png", 0.99, "nothing of that")  # a word search's candidate holding no word
    found = fuse(CLIP, [arger], [slide, unrelated], words("ÄRGER grossenordnung"))
    assert ranked(found[:2]) == [slide.relative_path, arger.relative_path]  # one word each: CLIP decides
    assert found[0].text_snippet == "Größenordnung und Überblick"
    assert unrelated.relative_path not in ranked(found)


def test_a_picture_found_by_several_rankings_is_one_candidate_with_its_lines():
    read = m("misc/tree.jpg", 0.54, "Baumschule Nord")
    found = fuse(CLIP, [m("misc/tree.jpg", 0.54)], [read], words("baumschule"))
    assert ranked(found) == ["misc/tree.jpg", "hubs/crowd.jpg", "hubs/sky.jpg", "misc/lake.jpg"]
    assert found[0].matched == ("image", "text") and found[0].text_snippet == "Baumschule Nord"


def test_a_match_marked_by_the_fusion_is_the_match_with_its_marks_changed_and_nothing_else():
    """The fusion copies a match's fields to mark it (dataclasses.replace costs 7x): the same as replace,
    while Match checks nothing when it is made."""
    import dataclasses

    from findimage.fusion import _copy_with

    original = dataclasses.replace(m("2024/Sommerfest/a.jpg", 0.6, "Sommerfest 2024"), size=3, posted=None)
    marked = _copy_with(original, matched=("image", "text"), text_snippet="Sommerfest 2024")
    assert marked == dataclasses.replace(original, matched=("image", "text"), text_snippet="Sommerfest 2024")
    assert original.matched != marked.matched and original.text_snippet is None, "the original is untouched"
    assert not hasattr(Match, "__post_init__"), "a check on creation would be skipped by the fusion's copy"
    [fused] = fuse([original], words=words("sommerfest"))
    assert fused.matched == ("image", "name", "text") and fused.text_snippet == "Sommerfest 2024"

"""Near-identical copies in the archive, as an admin and a searcher meet them: `findimage duplicates` groups
every resized, re-compressed, cropped, turned or captioned copy with its original and leaves other shots of
the same scene out; a copy used as a query is one hit, listing the other copies. Generated pictures
(tests/support/near_copies.py) and random-weight models: what groups them is the pixels, not CLIP."""
from __future__ import annotations

import json

import pytest
from es_support import both_stores
from near_copies import case, write_archive

from findimage.duplicates import human_bytes
from findimage_cli import EXIT_OK, EXIT_USAGE, main
from indexer.run import index_once


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def groups(settings):
    """The archive of two originals with their copies and look-alikes, indexed; the groups expected."""
    expected = write_archive(settings.archive, leave_out=("jpeg q50",))  # the copy posted below
    summary = index_once(settings)
    assert summary.failed == 0 and summary.added == sum(len(m) for m in expected.values()) + 6
    return expected


@both_stores
def test_duplicates_groups_every_copy_with_its_original_and_no_look_alike(settings, groups, capsys):
    code, out, _ = run(capsys, "duplicates", "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert sorted(sorted(m["relative_path"] for m in found["members"]) for found in report) == sorted(groups.values())
    for found in report:
        sizes = [m["bytes"] for m in found["members"]]
        assert sizes == sorted(sizes, reverse=True), "the largest copy first: the one to keep"
        assert all(m["bytes"] == (settings.archive / m["relative_path"]).stat().st_size for m in found["members"])

    code, out, _ = run(capsys, "duplicates")
    assert code == EXIT_OK
    extra = sum(m["bytes"] for found in report for m in found["members"][1:])
    copies = sum(len(found["members"]) - 1 for found in report)
    assert copies > 1 and out.splitlines()[0] == (f"2 groups of near-identical images: {copies} extra copies take "
                                                  f"{human_bytes(extra)}.")
    assert "photos/0/original.jpg" in out and "lookalikes/" not in out

    code, out, _ = run(capsys, "duplicates", "--folder", "copies/1", "--json")
    [only] = json.loads(out)
    assert sorted(m["relative_path"] for m in only["members"]) == [p for p in groups["photos/1/original.jpg"]
                                                                    if p.startswith("copies/1/")]
    assert json.loads(run(capsys, "duplicates", "--folder", "lookalikes", "--json")[1]) == []
    code, _, err = run(capsys, "duplicates", "--folder", "../elsewhere")
    assert code == EXIT_USAGE and "outside the archive" in err


@both_stores
def test_a_recompressed_copy_as_query_is_one_hit_listing_its_near_copies(settings, groups, capsys, tmp_path):
    posted = tmp_path / "posted.jpg"
    posted.write_bytes(case(0, scale=0.5).copies["jpeg q50"])
    code, out, _ = run(capsys, "search", "--image", str(posted), "-k", "5", "--json")
    assert code == EXIT_OK
    first, *others = json.loads(out)
    group = groups["photos/0/original.jpg"]
    assert sorted([first["relative_path"], *first["near_copies"], *first["also_at"]]) == group
    assert not any(m["relative_path"] in group or set(m["near_copies"]) & set(group) for m in others)
    assert all("near_copies" in m for m in others)

    code, out, _ = run(capsys, "search", "--image", str(posted), "-k", "5")
    assert "(near-identical copy: already in the archive)" in out.splitlines()[0]
    assert out.count("already in the archive") == 1

    new = tmp_path / "new.jpg"
    new.write_bytes(case(7, scale=0.5).original)  # a picture the archive does not hold
    code, out, _ = run(capsys, "search", "--image", str(new), "-k", "5", "--json")
    assert code == EXIT_OK and len(json.loads(out)) == 5
    assert "already in the archive" not in run(capsys, "search", "--image", str(new), "-k", "5")[1]


@both_stores
def test_near_copies_found_by_a_text_query_are_one_hit(settings, groups, capsys):
    """Whatever CLIP (random weights here) ranks first, the top results are different pictures."""
    code, out, _ = run(capsys, "search", "photo", "-k", "6", "--json")
    assert code == EXIT_OK
    shown = json.loads(out)
    for original, members in groups.items():
        hits = [m for m in shown if m["relative_path"] in members]
        assert len(hits) <= 1, f"{original}'s copies shown apart: {[m['relative_path'] for m in hits]}"
    assert len(shown) == 6

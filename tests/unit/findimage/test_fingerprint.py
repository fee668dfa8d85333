"""Near-identical pictures: a copy of a picture (resized, re-compressed, converted, cut by up to 10% of a
side, turned by its EXIF orientation, with a caption or a watermark) is the same picture; another shot of
the same scene (objects moved, another texture, light from another side) is not. Generated pictures
(tests/support/near_copies.py), decoded as the indexer decodes them."""
from __future__ import annotations

import pytest
from near_copies import as_indexed, corpus, encoded, scene
from PIL import Image

from findimage.fingerprint import Fingerprint, distance, fingerprint, group, same_picture

ORIGINALS = 8  # two of each kind of scene, at half size: quick, and every copy still 64 px or more


@pytest.fixture(scope="module")
def pictures():
    """Per original: its fingerprint, its copies' and its look-alikes' (by what was done to them)."""
    found = []
    for case in corpus(ORIGINALS, scale=0.5):
        found.append((case.name, fingerprint(as_indexed(case.original)),
                      {what: fingerprint(as_indexed(data)) for what, data in case.copies.items()},
                      {what: fingerprint(as_indexed(data)) for what, data in case.lookalikes.items()}))
    return found


def test_every_copy_is_the_same_picture_as_its_original(pictures):
    missed = [f"{name}: {what} ({distance(original, copy):.3f})" for name, original, copies, _ in pictures
              for what, copy in copies.items() if not same_picture(original, copy)]
    assert missed == []


def test_another_shot_of_the_same_scene_is_another_picture(pictures):
    taken = [f"{name}: {what} ({distance(original, other):.3f})" for name, original, _, lookalikes in pictures
             for what, other in lookalikes.items() if same_picture(original, other)]
    assert taken == []


def test_different_originals_are_different_pictures(pictures):
    originals = [original for _, original, _, _ in pictures]
    assert not any(same_picture(a, b) for i, a in enumerate(originals) for b in originals[i + 1:])


def test_the_duplicates_report_groups_each_original_with_its_copies_and_nothing_else(pictures):
    items = []
    for name, original, copies, lookalikes in pictures:
        items.append(((name, "original"), original))
        items += [((name, what), copy) for what, copy in copies.items()]
        items += [((name, f"look-alike: {what}"), other) for what, other in lookalikes.items()]
    groups = group(items)
    expected = [[(name, "original"), *((name, what) for what in copies)] for name, _, copies, _ in pictures]
    assert sorted(groups) == sorted(expected)


def test_pictures_none_of_which_is_a_copy_of_another_form_no_group(pictures):
    assert group([(name, original) for name, original, _, _ in pictures]) == []
    assert group([((name, what), other) for name, _, _, lookalikes in pictures
                  for what, other in lookalikes.items()]) == []


def test_a_posted_copy_finds_its_archive_original_through_the_keys_a_store_indexes(pictures):
    """The lookup a store runs: the posted copy's probes against the keys stored for the archive. It
    misses about 1 copy in 500 (benchmarks/duplicates.py measures it); never more than 1 in 100 here."""
    tried = [(f"{name}: {what}", copy, original) for name, original, copies, _ in pictures
             for what, copy in copies.items()]
    lost = [what for what, copy, original in tried if not set(copy.probes()) & set(original.keys())]
    assert len(lost) <= len(tried) // 100, lost


def test_the_fingerprint_is_kept_as_a_short_string_or_as_integers_and_read_back_unchanged(pictures):
    _, original, copies, _ = pictures[0]
    text = original.to_string()
    assert len(text) == 348 and text.isascii()
    assert Fingerprint.from_string(text) == original
    assert Fingerprint.from_ints(original.to_ints()) == original
    assert all(-2**63 <= value < 2**63 for value in original.to_ints())
    copy = copies["jpeg q50"]
    assert Fingerprint.from_string(copy.to_string()).keys() == copy.keys()
    assert all(0 <= key < 2**24 for key in copy.keys() + copy.probes())


def test_a_fingerprint_from_another_version_or_no_fingerprint_at_all_is_refused(pictures):
    original = pictures[0][1]
    with pytest.raises(ValueError, match="not a picture fingerprint"):
        Fingerprint.from_string("hello")
    other_version = (2 << 32, *original.to_ints()[1:])
    with pytest.raises(ValueError, match="version 2"):
        Fingerprint.from_ints(other_version)


def test_a_picture_decoded_at_64_px_has_the_fingerprint_of_its_224_px_decode():
    data = encoded(scene(3).picture)
    small, large = as_indexed(data, side=64), as_indexed(data)
    assert min(small.size) == 64
    assert same_picture(fingerprint(small), fingerprint(large))


def test_plain_pictures_of_different_brightness_are_different_pictures():
    black, white = (fingerprint(Image.new("RGB", (320, 240), colour)) for colour in ((5, 5, 5), (250, 250, 250)))
    assert not same_picture(black, white)
    assert same_picture(white, fingerprint(Image.new("RGB", (640, 480), (250, 250, 250))))


def test_a_banner_and_a_column_of_the_same_colour_are_different_pictures():
    """Shapes no 10% crop turns into each other: not compared at all (a 1000:1 banner included)."""
    banner, column = (fingerprint(Image.new("RGB", size, (90, 120, 60))) for size in ((1000, 1), (1, 1000)))
    landscape, portrait = (fingerprint(scene(0).picture.resize(size)) for size in ((640, 480), (480, 640)))
    assert not same_picture(banner, column)
    assert not same_picture(landscape, portrait)
    assert group([("banner", banner), ("column", column), ("landscape", landscape), ("portrait", portrait)]) == []

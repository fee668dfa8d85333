"""Finding images by the words in them: screenshots, a slide and a photo of a sign, read by the real text
reader during indexing, found first by phrases from their text on both stores, with file names that say
nothing and CLIP at random weights."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from es_support import both_stores
from photos import save_photo
from rendered_text import error_dialog, german_slide, street_sign

from findimage.backends import open_store
from findimage.config import Settings, load_settings
from findimage.search import Searcher
from findimage_cli import main
from indexer import text_stage
from indexer.run import index_once

pytestmark = pytest.mark.slow


@pytest.fixture
def text_archive(settings, monkeypatch):
    """Three pictures with text under names that say nothing, among photos without any; reading text on
    (the default, which the other tests turn off)."""
    monkeypatch.setenv("FINDIMAGE_OCR", "on")  # for the command run in-process
    settings = dataclasses.replace(settings, ocr=True)
    root = settings.archive
    for i, rendered in enumerate((error_dialog(), german_slide(), street_sign())):
        rendered.image.save(root / f"IMG_{4100 + i}.jpg" if rendered.kind == "sign" else root / f"Screenshot {i}.png")
    for i in range(5):
        save_photo(root / "photos" / f"DSC_{i:04}.jpg", seed=500 + i)
    return settings


def ranked(settings, text: str, k: int = 3):
    searcher = Searcher(settings)
    try:
        return searcher.by_text(text, k=k).matches
    finally:
        searcher.store.close()


def first_paths(settings, text: str, k: int = 3) -> list[str]:
    return [m.relative_path for m in ranked(settings, text, k)]


QUERIES = [
    ("disk quota exceeded", "Screenshot 0.png"),
    ("Umsatzprognose", "Screenshot 1.png"),
    ("Größenordnung Überblick", "Screenshot 1.png"),
    ("grossenordnung uberblick", "Screenshot 1.png"),  # ß typed as ss, umlauts without dots
    ("das Foto vom Schild Schillerplatz", "IMG_4102.jpg"),
]


def test_reading_text_is_on_by_default():
    assert Settings().ocr and load_settings({}, env_file=None).ocr


@both_stores
def test_pictures_are_found_first_by_the_words_in_them(text_archive):
    summary = index_once(text_archive, progress=False)
    assert summary.added == 8 and summary.text_read == 8 and summary.text_failed == 0
    for query, expected in QUERIES:
        assert first_paths(text_archive, query)[0] == expected, query


def test_new_pictures_have_their_text_read_while_the_pass_embeds(text_archive, monkeypatch):
    """Beside the embedding, from the pixels decoded for it: the pass's last stage finds nothing left to read."""
    left: list[tuple[int, int]] = []
    run = text_stage.TextStage.run

    def noting_what_is_left(stage, handled=()):
        left.append(stage.store.text_status())
        return run(stage, handled)

    monkeypatch.setattr(text_stage.TextStage, "run", noting_what_is_left)
    summary = index_once(text_archive, progress=False)
    assert (summary.added, summary.text_read, summary.text_failed) == (8, 8, 0) and left == [(8, 8)]
    assert first_paths(text_archive, "Schillerplatz")[0] == "IMG_4102.jpg"


@both_stores
def test_without_reading_text_they_are_not_and_the_next_pass_reads_it_without_embedding(text_archive):
    off = dataclasses.replace(text_archive, ocr=False)
    assert index_once(off, progress=False).text_read == 0
    misses = [query for query, expected in QUERIES if first_paths(off, query)[0] != expected]
    assert misses, "CLIP at random weights and names that say nothing do not find them (some by chance)"
    assert not any("text" in m.matched or m.text_snippet for q, _ in QUERIES for m in ranked(off, q, 8))

    again = index_once(text_archive, progress=False)  # an ordinary pass with reading on
    assert again.embedded == 0 and again.added == 0 and again.text_read == 8
    assert all(first_paths(text_archive, q)[0] == expected for q, expected in QUERIES)


def test_json_says_the_text_matched_and_quotes_its_line(text_archive, capsys):
    index_once(text_archive, progress=False)
    assert main(["search", "disk quota exceeded", "--json", "-k", "3"]) == 0
    first = json.loads(capsys.readouterr().out)[0]
    assert first["relative_path"] == "Screenshot 0.png" and "text" in first["matched"]
    assert "disk quota exceeded" in first["text_snippet"].lower()
    assert main(["search", "disk quota exceeded", "-k", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("(uncertain")]
    assert lines[0].endswith("[text matched]") and lines[1].strip().lower().startswith("text: error: disk quota")


def test_copies_and_moves_reuse_the_text_and_status_says_how_far_reading_is(text_archive, capsys):
    index_once(text_archive, progress=False)
    root = text_archive.archive
    (root / "copy.png").write_bytes((root / "Screenshot 0.png").read_bytes())
    (root / "Screenshot 1.png").rename(root / "moved.png")
    summary = index_once(text_archive, progress=False)
    assert summary.text_read == 0 and summary.text_reused == 2 and summary.embedded == 0
    assert first_paths(text_archive, "Umsatzprognose")[0] == "moved.png"
    assert main(["status"]) == 0
    assert "text read:    9 of 9 images" in capsys.readouterr().out


def stored_reading(settings, path: str):
    store = open_store(settings)
    try:
        sha256 = hashlib.sha256((settings.archive / path).read_bytes()).hexdigest()
        return store.texts_by_sha256([sha256]).get(sha256)
    finally:
        store.close()


def test_a_reading_that_fails_is_recorded_not_counted_as_a_broken_file_and_not_read_again(settings):
    tight = dataclasses.replace(settings, ocr=True, ocr_memory_mb=16)  # the reader's child cannot even load
    error_dialog().image.save(settings.archive / "a.png")
    first = index_once(tight, progress=False)
    assert first.added == 1 and first.failed == 0 and (first.text_failed, first.text_timed_out) == (1, 0)
    assert stored_reading(settings, "a.png").reason == \
        "reading its text needed more than the text reader's 16 MB (FINDIMAGE_OCR_MEMORY_MB)"
    again = index_once(dataclasses.replace(tight, ocr_memory_mb=2048), progress=False)
    assert (again.text_read, again.text_failed) == (0, 0), "recorded: not read again until it changes"


def test_a_reading_that_timed_out_is_read_on_the_next_pass(settings, capsys):
    """A busy machine is no fault of the picture."""
    error_dialog().image.save(settings.archive / "a.png")
    slow = dataclasses.replace(settings, ocr=True, ocr_timeout_seconds=0.001)  # no child answers that fast
    first = index_once(slow, progress=False)
    assert first.added == 1 and (first.text_read, first.text_timed_out, first.text_failed) == (0, 1, 0)
    assert "timed out in 1 (read again on the next pass)" in first.line()
    assert main(["status"]) == 0
    assert "text read:    0 of 1 images" in capsys.readouterr().out, "not done: pending again"
    again = index_once(dataclasses.replace(slow, ocr_timeout_seconds=120.0), progress=False)
    assert (again.embedded, again.text_read, again.text_timed_out) == (0, 1, 0)
    assert stored_reading(settings, "a.png").attempts == 2
    assert first_paths(dataclasses.replace(settings, ocr=True), "disk quota exceeded")[0] == "a.png"


@both_stores
def test_a_reading_that_keeps_timing_out_is_recorded_as_failed_after_three(settings):
    error_dialog().image.save(settings.archive / "a.png")
    slow = dataclasses.replace(settings, ocr=True, ocr_timeout_seconds=0.001)
    passes = [index_once(slow, progress=False) for _ in range(text_stage.MAX_ATTEMPTS)]
    assert [(p.text_timed_out, p.text_failed) for p in passes] == [(1, 0), (1, 0), (0, 1)]
    failed = stored_reading(settings, "a.png")
    assert (failed.state, failed.reason, failed.attempts) == (
        "failed", "reading its text took longer than 0.001 s (3 times)", 3)
    normal = dataclasses.replace(slow, ocr_timeout_seconds=120.0)
    later = index_once(normal, progress=False)
    assert (later.text_read, later.text_timed_out, later.text_failed) == (0, 0, 0), "until the file changes"
    german_slide().image.save(settings.archive / "a.png")
    changed = index_once(normal, progress=False)
    assert (changed.updated, changed.text_read) == (1, 1) and stored_reading(settings, "a.png").attempts == 1

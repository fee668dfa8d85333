"""The log as an operator's collector reads it from `findimage index` and `findimage search`: with
FINDIMAGE_LOG_FORMAT=json every line on stderr is a JSON object, at every level, the text reader's child
process included, while stdout keeps the results as they are; FINDIMAGE_LOG_LEVEL sets what is logged."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bot_support import process_env
from photos import jpeg_bytes, save_photo, write_bad_files

from findimage.errors import EXIT_OK, EXIT_USAGE
from indexer.run import index_once

FINDIMAGE = str(Path(sys.executable).parent / "findimage")


def findimage(env: dict, *argv: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([FINDIMAGE, *argv], env=process_env(env, **settings), cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def json_lines(stderr: str) -> list[dict]:
    """Every stderr line as JSON (fails on the first that is not), each with the documented fields."""
    entries = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n{stderr}") from None
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    return entries


def bad_exif_jpeg() -> bytes:
    """A photo whose EXIF names more data than it holds: Pillow warns (UserWarning) whenever it is decoded,
    by the indexer and again by the text reader's child process."""
    exif = (b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00"
            b"\x0f\x01\x02\x00\xff\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00")
    data = jpeg_bytes(seed=5, size=(200, 150))
    return data[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + data[2:]


@pytest.fixture
def archive_with_broken_files(settings):
    for i in range(3):
        save_photo(settings.archive / "events" / f"stage-{i}.jpg", seed=100 + i)
    (settings.archive / "events" / "exif.jpg").write_bytes(bad_exif_jpeg())
    write_bad_files(settings.archive / "bad")
    return settings.archive


def test_index_in_json_writes_json_lines_only_even_at_debug_and_from_the_text_reader(env, archive_with_broken_files,
                                                                                     tmp_path):
    done = findimage(env, "index", cwd=tmp_path, FINDIMAGE_LOG_FORMAT="json", FINDIMAGE_LOG_LEVEL="DEBUG",
                     FINDIMAGE_OCR="on")

    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith("added 4, updated 0, moved 0, removed 0, unchanged 0, failed 5 in ")
    entries = json_lines(done.stderr)
    failed = [e for e in entries if e["message"].startswith("failed: ")]
    assert len(failed) == 5 and {(e["level"], e["logger"]) for e in failed} == {("WARNING", "findimage")}
    assert any(e["message"].startswith("failed: bad/empty.jpg: empty file") for e in failed)
    assert {e["level"] for e in entries} >= {"DEBUG", "INFO", "WARNING"}
    # Pillow's warning, once from the indexer and once from the text reader's child (a process of its own)
    assert len([e for e in entries if e["logger"] == "py.warnings" and "Tag data larger" in e["message"]]) == 2
    skipped = [e for e in entries if e["logger"] == "indexer.embedding"]
    assert skipped and all(re.fullmatch(r"[0-9a-f]{12}", e.get("pass_id", "")) for e in skipped)
    assert len({e["pass_id"] for e in skipped}) == 1, "one pass, one id"


def test_search_in_json_keeps_its_results_on_stdout(env, settings, archive, tmp_path):
    assert index_once(settings, progress=False).added == 7  # in this process: the searches' logs are the story

    plain = findimage(env, "search", "stage", "lights", "-k", "3", cwd=tmp_path, FINDIMAGE_LOG_FORMAT="json",
                      FINDIMAGE_LOG_LEVEL="DEBUG")
    as_json = findimage(env, "search", "stage", "lights", "-k", "3", "--json", cwd=tmp_path,
                        FINDIMAGE_LOG_FORMAT="json", FINDIMAGE_LOG_LEVEL="DEBUG")
    refused = findimage(env, "search", "x", "-k", "0", cwd=tmp_path, FINDIMAGE_LOG_FORMAT="json")

    assert plain.returncode == as_json.returncode == EXIT_OK
    ranked = [line for line in plain.stdout.splitlines() if not line.startswith("(uncertain")]
    assert [line.split()[0] for line in ranked] == ["1", "2", "3"]
    assert len(json.loads(as_json.stdout)) == 3
    for done in (plain, as_json):
        assert {e["level"] for e in json_lines(done.stderr)} >= {"DEBUG", "INFO"}
    assert refused.returncode == EXIT_USAGE and refused.stdout == ""
    (entry,) = json_lines(refused.stderr)
    assert (entry["level"], entry["message"]) == (
        "ERROR", "findimage: -k 0 must be a whole number from 1 to 1000 (how many images to show).")


def test_the_log_level_decides_what_is_logged_and_v_means_info_at_least(env, archive, tmp_path):
    def levels(*argv: str, **settings: str) -> set[str]:
        done = findimage(env, *argv, "index", cwd=tmp_path, FINDIMAGE_LOG_FORMAT="json", **settings)
        assert done.returncode == EXIT_OK, done.stderr
        return {e["level"] for e in json_lines(done.stderr)}

    # A new broken file for each pass: a WARNING line each time (failed files are not read again)
    (archive / "early.jpg").write_bytes(b"")
    first = levels(FINDIMAGE_LOG_LEVEL="INFO")
    (archive / "late.jpg").write_bytes(b"")
    quiet = levels(FINDIMAGE_LOG_LEVEL="WARNING")
    (archive / "later.jpg").write_bytes(b"")
    verbose = levels("-v", FINDIMAGE_LOG_LEVEL="WARNING")
    (archive / "latest.jpg").write_bytes(b"")
    by_default = levels()

    assert "INFO" in first and "WARNING" in first
    assert quiet == {"WARNING"}, "FINDIMAGE_LOG_LEVEL=WARNING silences INFO lines"
    assert verbose == {"INFO", "WARNING"}, "-v logs what happens: INFO at least"
    assert by_default == {"WARNING"}, "commands run by hand log warnings unless asked"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_bad_log_level_is_one_sentence_naming_the_setting_and_exit_2(env, tmp_path, log_format):
    done = findimage(env, "status", cwd=tmp_path, FINDIMAGE_LOG_LEVEL="loud", FINDIMAGE_LOG_FORMAT=log_format)

    sentence = ("findimage: configuration problem: FINDIMAGE_LOG_LEVEL='loud' must be one of: DEBUG, INFO, WARNING, "
                "ERROR.")
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    if log_format == "text":
        assert done.stderr == sentence + "\n"
    else:
        (entry,) = json_lines(done.stderr)
        assert (entry["level"], entry["logger"], entry["message"]) == ("ERROR", "findimage", sentence)

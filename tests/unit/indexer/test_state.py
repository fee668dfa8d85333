"""The indexer's state file (indexer.state) on its own: what is kept, how it is written, what a bad file does.

Fast unit tests (no models); the passes that use it are tested in test_indexer_safety.
"""
from __future__ import annotations

import json
import logging
import os

import pytest

import indexer.state as state_module
from indexer.state import STATE_FILE, FailedFile, IndexerState, PendingRemoval, load_state, save_state, state_path


def sample() -> IndexerState:
    return IndexerState(
        failed={"b/broken.jpg": FailedFile(1234, 1700000000.25, "cannot identify image file"),
                "a/empty.png": FailedFile(0, 1600000000.5, "empty file")},
        pending_removal=PendingRemoval(count=40, indexed=50, refused_at=1700000100.75, examples=["x/1.jpg", "x/2.jpg"]))


def test_the_state_file_lives_in_the_data_folder():
    assert STATE_FILE == "indexer-state.json"
    assert state_path("/data") == state_path("/data/") and str(state_path("/data")) == "/data/indexer-state.json"


def test_a_missing_folder_or_file_is_an_empty_state(tmp_path):
    for folder in (tmp_path / "never-made", tmp_path):
        state = load_state(folder)
        assert state == IndexerState() and state.failed == {} and state.pending_removal is None


def test_what_is_saved_is_loaded_back_exactly(tmp_path):
    save_state(tmp_path / "data", sample())
    assert load_state(tmp_path / "data") == sample()

    without_removal = IndexerState(failed=sample().failed)
    save_state(tmp_path / "data", without_removal)
    loaded = load_state(tmp_path / "data")
    assert loaded == without_removal and loaded.pending_removal is None


def test_the_file_is_json_with_the_failures_sorted_by_path(tmp_path):
    save_state(tmp_path, sample())

    text = (tmp_path / STATE_FILE).read_text(encoding="utf-8")
    assert json.loads(text) == {
        "failed": {"a/empty.png": {"size": 0, "mtime": 1600000000.5, "reason": "empty file"},
                   "b/broken.jpg": {"size": 1234, "mtime": 1700000000.25, "reason": "cannot identify image file"}},
        "pending_removal": {"count": 40, "indexed": 50, "refused_at": 1700000100.75,
                            "examples": ["x/1.jpg", "x/2.jpg"]},
    }
    assert list(json.loads(text)["failed"]) == ["a/empty.png", "b/broken.jpg"]
    save_state(tmp_path, IndexerState())
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"failed": {}, "pending_removal": None}


@pytest.mark.parametrize("content", [
    "{not json",
    '{"failed": {"a.jpg": {"size": 1}}}',  # a field missing
    '{"failed": {"a.jpg": {"size": 1, "mtime": 2, "reason": "r", "extra": 3}}}',  # a field unknown
    '{"failed": [1, 2]}',  # another shape
    '{"pending_removal": {"count": 1}}',
    "[]",
    b"\xff\xfe not utf-8",
])
def test_an_unreadable_state_file_is_ignored_with_a_warning(tmp_path, caplog, content):
    path = tmp_path / STATE_FILE
    path.write_bytes(content if isinstance(content, bytes) else content.encode())

    with caplog.at_level(logging.WARNING, logger="indexer.state"):
        state = load_state(tmp_path)

    assert state == IndexerState()
    (record,) = caplog.records
    assert record.getMessage().startswith(f"ignoring {path} (")
    assert len(record.getMessage()) > len(f"ignoring {path} ()")
    assert record.args[1] is not None and str(record.args[1]) in record.getMessage(), "the reason is in the log"


def test_a_state_file_that_is_a_folder_is_ignored(tmp_path, caplog):
    (tmp_path / STATE_FILE).mkdir()
    with caplog.at_level(logging.WARNING, logger="indexer.state"):
        assert load_state(tmp_path) == IndexerState()
    assert len(caplog.records) == 1


def test_a_failure_is_known_only_while_the_file_is_unchanged():
    state = sample()
    known = state.failed["b/broken.jpg"]

    assert state.known_failure("b/broken.jpg", 1234, 1700000000.25) is known
    assert state.known_failure("b/broken.jpg", 1235, 1700000000.25) is None  # rewritten: read again
    assert state.known_failure("b/broken.jpg", 1234, 1700000001.25) is None  # touched: read again
    assert state.known_failure("b/other.jpg", 1234, 1700000000.25) is None
    assert state.known_failure("a/empty.png", 0, 1600000000.5) == FailedFile(0, 1600000000.5, "empty file")


def test_saving_makes_the_folder_and_leaves_only_the_state_file(tmp_path):
    folder = tmp_path / "new" / "data"
    save_state(folder, sample())
    save_state(folder, sample())
    assert sorted(os.listdir(folder)) == [STATE_FILE]


def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    save_state(tmp_path, sample())
    before = (tmp_path / STATE_FILE).read_bytes()
    temporaries = []

    def full_disk(src, dst):
        temporaries.append(src)
        assert os.path.dirname(src) == str(tmp_path), "the temporary file is beside the state file"
        assert os.path.basename(src).startswith(STATE_FILE + ".") and src.endswith(".tmp")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_state(tmp_path, IndexerState())

    assert len(temporaries) == 1
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE]
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_the_new_contents_are_on_disk_before_the_file_is_replaced(tmp_path, monkeypatch):
    synced = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    def replace(src, dst):
        assert synced and synced[-1] == os.path.getsize(src) > 0, "fsynced with all its bytes before the rename"
        real_replace(src, dst)

    monkeypatch.setattr(state_module.os, "fsync", fsync)
    monkeypatch.setattr(state_module.os, "replace", replace)
    save_state(tmp_path, sample())
    assert load_state(tmp_path) == sample()

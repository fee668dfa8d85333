"""The data folder's lock: every process using the folder holds it together with the others; a restore
holds it alone, refused while any of them runs, and one that starts meanwhile waits until it is done."""
from __future__ import annotations

import logging
import threading

import pytest

from findimage.locks import DataFolderInUse, pass_lock, restoring_data_folder, using_data_folder


def test_the_bot_and_the_indexer_use_the_folder_together_and_a_restore_is_refused_meanwhile(tmp_path):
    with using_data_folder(tmp_path), using_data_folder(tmp_path):  # e.g. the bot and `findimage schedule`
        with pytest.raises(DataFolderInUse) as refused:
            with restoring_data_folder(tmp_path):
                pass
    assert str(refused.value) == (f"findimage processes are using {tmp_path} (the bot, the indexer or a worker): "
                                  "stop the bot and the indexer, then restore again.")
    with restoring_data_folder(tmp_path):  # all of them gone
        pass


def test_the_refusal_names_a_running_pass(tmp_path):
    with using_data_folder(tmp_path), pass_lock(tmp_path):
        with pytest.raises(DataFolderInUse, match=r"\(the indexing pass \(pid \d+, since [0-9: -]+\)\)"):
            with restoring_data_folder(tmp_path):
                pass


def test_a_process_starting_during_a_restore_waits_until_it_is_done(tmp_path, caplog):
    using = threading.Event()
    starting = threading.Thread(target=lambda: _use(tmp_path, using), daemon=True)
    with caplog.at_level(logging.WARNING, logger="findimage.locks"), restoring_data_folder(tmp_path):
        starting.start()
        waiting = _wait_for_record(caplog, "waiting for a restore to finish")
        assert not using.is_set(), "it waited"
    starting.join(30)
    assert using.is_set() and str(tmp_path) in waiting


def _use(folder, using: threading.Event) -> None:
    with using_data_folder(folder):
        using.set()


def _wait_for_record(caplog, text: str) -> str:
    done = threading.Event()
    for _ in range(600):
        found = [r.getMessage() for r in caplog.records if text in r.getMessage()]
        if found:
            return found[0]
        done.wait(0.05)
    raise AssertionError(f"no log record with {text!r}")

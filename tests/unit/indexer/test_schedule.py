"""The scheduled indexer: one pass at start, then on an interval, never two passes at once."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler
from photos import save_photo

from findimage.stores.embedded.store import EmbeddedStore
from indexer.lock import pass_lock
from indexer.schedule import make_scheduler, run_locked_pass


def test_scheduler_runs_a_pass_at_start_then_picks_up_new_images(env, settings, archive):
    proc = subprocess.Popen([sys.executable, "-m", "findimage_cli", "schedule"],
                            env={**os.environ, **env, "FINDIMAGE_INDEX_INTERVAL_MINUTES": "0.1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        store = EmbeddedStore(settings.data_dir)
        assert _eventually(lambda: store.count() == 7, 60), "first pass at start"
        save_photo(archive / "later" / "new.jpg", seed=77)
        assert _eventually(lambda: store.count() == 8, 60), "the next pass indexes the new photo"

        second = subprocess.run([sys.executable, "-m", "findimage_cli", "schedule"], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "Another scheduled indexer is already running (pid" in second.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_pass_is_skipped_while_another_process_holds_the_pass_lock(tmp_path):
    calls = []
    with pass_lock(tmp_path):
        assert run_locked_pass(tmp_path, lambda held: calls.append("ran")) is None
    assert calls == []
    assert run_locked_pass(tmp_path, lambda held: calls.append("ran") or "done") == "done"


def test_an_overrunning_pass_never_runs_twice_at_once():
    running, overlaps, refused = [0], [], []
    release = threading.Event()

    def slow_pass():
        running[0] += 1
        overlaps.append(running[0])
        release.wait(5)
        running[0] -= 1

    background = make_scheduler(0.002, slow_pass, BackgroundScheduler)  # a 0.12 s interval
    background.add_listener(lambda event: refused.append(event), EVENT_JOB_MAX_INSTANCES)
    background.start()
    try:
        assert _eventually(lambda: len(refused) >= 2, 10), "later runs found the first still running"
    finally:
        release.set()
        background.shutdown(wait=True)
    assert max(overlaps) == 1


def _eventually(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_refused_pass_is_logged_and_the_schedule_goes_on_until_the_archive_is_back(env, settings, archive, tmp_path):
    away = archive.rename(archive.with_name("unmounted"))
    log_file = tmp_path / "schedule.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "findimage_cli", "schedule"],
                                env={**os.environ, **env, "FINDIMAGE_INDEX_INTERVAL_MINUTES": "0.1"},
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        refused = f"ERROR indexer.run: indexing pass refused: The archive folder {archive} does not exist"
        assert _eventually(lambda: log_file.read_text().count(refused) >= 2, 60), log_file.read_text()
        assert proc.poll() is None, "a refused pass does not end the schedule"
        away.rename(archive)
        store = EmbeddedStore(settings.data_dir)
        assert _eventually(lambda: store.count() == 7, 60), "the next pass after the archive is back indexes it"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

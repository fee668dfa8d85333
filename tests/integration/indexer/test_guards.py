"""The index survives what goes wrong around it: an unmounted archive, a folder that cannot be listed,
a mass deletion, files that never decode, a full disk. Told through the `findimage` command."""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from es_support import both_stores
from photos import save_photo, write_bad_files

from findimage.backends import open_store
from findimage_cli import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, main

ROOT = Path(__file__).resolve().parents[3]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def documents(settings) -> set[str]:
    store = open_store(settings)
    try:
        return set(store.file_states())
    finally:
        store.close()


@pytest.fixture
def indexed_archive(settings, archive, capsys):
    assert run(capsys, "index")[0] == EXIT_OK
    assert len(documents(settings)) == 7
    return archive


# ---- the archive root ----------------------------------------------------------------------------
@both_stores
def test_an_archive_renamed_away_changes_nothing_and_says_what_to_check(settings, indexed_archive, capsys):
    indexed_archive.rename(indexed_archive.with_name("archive-elsewhere"))
    before = documents(settings)

    code, out, err = run(capsys, "index")

    assert code == EXIT_REFUSED and out == ""
    assert err.strip() == (f"findimage: The archive folder {settings.archive} does not exist; nothing was changed. "
                           "Is the archive mounted, and is FINDIMAGE_ARCHIVE right?")
    assert documents(settings) == before


@both_stores
def test_a_full_rebuild_of_a_missing_archive_keeps_the_index(settings, indexed_archive, capsys):
    shutil.rmtree(indexed_archive)
    code, _, err = run(capsys, "index", "--full")
    assert code == EXIT_REFUSED and "does not exist; nothing was changed" in err
    assert len(documents(settings)) == 7


def test_an_empty_mount_point_changes_nothing_until_confirmed(settings, indexed_archive, capsys):
    for child in indexed_archive.iterdir():
        shutil.rmtree(child)  # what an unmounted NAS share (or Docker's bind mount of a missing path) looks like

    code, out, err = run(capsys, "index")
    assert code == EXIT_REFUSED and out == ""
    assert "holds no images, but the index has 7; nothing was changed" in err
    assert "findimage index --allow-mass-removal" in err
    assert len(documents(settings)) == 7

    code, out, _ = run(capsys, "index", "--allow-mass-removal")
    assert code == EXIT_OK and out.startswith("added 0, updated 0, moved 0, removed 7,")
    assert documents(settings) == set()


def test_an_archive_path_that_is_a_file_is_refused(settings, indexed_archive, capsys):
    shutil.rmtree(indexed_archive)
    indexed_archive.write_text("not a folder")
    code, _, err = run(capsys, "index")
    assert code == EXIT_REFUSED and "is not a folder; nothing was changed" in err
    assert len(documents(settings)) == 7


# ---- mass removal --------------------------------------------------------------------------------
@both_stores
def test_removing_more_than_half_is_held_back_until_confirmed(settings, indexed_archive, capsys):
    for path in sorted((indexed_archive / "events" / "2024").iterdir()):
        path.unlink()  # 4 of 7
    save_photo(indexed_archive / "new.jpg", seed=77)

    code, out, err = run(capsys, "index")

    assert code == EXIT_REFUSED
    assert out.startswith("added 1, updated 0, moved 0, removed 0, unchanged 3, failed 0 in ")
    assert "4 removal(s) refused" in out
    assert err.strip() == ("findimage: Refused to remove 4 of the 7 indexed images (more than 50%): is the archive "
                           "fully mounted? If these images were really deleted, run `findimage index "
                           "--allow-mass-removal` to remove them from the index.")
    assert len(documents(settings)) == 8, "the new photo is indexed, the 4 vanished ones are kept"

    _, status, _ = run(capsys, "status")
    assert "refused removal: 4 of 7 documents at " in status
    assert "events/2024/stage-0.jpg" in status

    code, out, _ = run(capsys, "index", "--allow-mass-removal")
    assert code == EXIT_OK and ", removed 4," in out
    assert documents(settings) == {"new.jpg", "nature/mountain-0.png", "nature/mountain-1.png",
                                   "nature/mountain-2.png"}
    _, status, _ = run(capsys, "status")
    assert "refused removal" not in status


def test_the_threshold_is_a_setting(settings, indexed_archive, capsys, monkeypatch):
    (indexed_archive / "nature" / "mountain-0.png").unlink()
    (indexed_archive / "nature" / "mountain-1.png").unlink()  # 2 of 7: 29 %
    monkeypatch.setenv("FINDIMAGE_MAX_REMOVAL_FRACTION", "0.25")
    code, out, err = run(capsys, "index")
    assert code == EXIT_REFUSED and "Refused to remove 2 of the 7 indexed images (more than 25%)" in err
    monkeypatch.setenv("FINDIMAGE_MAX_REMOVAL_FRACTION", "0.3")
    code, out, _ = run(capsys, "index")
    assert code == EXIT_OK and ", removed 2," in out


def test_moving_the_whole_archive_into_a_folder_is_not_a_removal(settings, indexed_archive, capsys):
    target = indexed_archive / "2024-reorganised"
    target.mkdir()
    for child in ("events", "nature"):
        shutil.move(indexed_archive / child, target / child)
    code, out, _ = run(capsys, "index")
    assert code == EXIT_OK and out.startswith("added 0, updated 0, moved 7, removed 0,")
    assert all(p.startswith("2024-reorganised/") for p in documents(settings))


@both_stores
def test_a_full_rebuild_that_would_remove_most_documents_does_not_start(settings, indexed_archive, capsys):
    shutil.rmtree(indexed_archive / "events")
    code, out, err = run(capsys, "index", "--full")
    assert code == EXIT_REFUSED and out == ""
    assert "Refused to remove 4 of the 7 indexed images" in err
    assert len(documents(settings)) == 7


# ---- files that fail -----------------------------------------------------------------------------
def _index_verbose(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findimage_cli", "-v", "index", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_known_bad_files_are_not_read_again_and_no_model_is_loaded(settings, env, archive, capsys):
    bad = write_bad_files(archive / "bad")
    first = _index_verbose(env)
    assert first.returncode == 0, first.stderr
    assert "loaded model" in first.stderr and "bad/empty.jpg" in first.stderr

    second = _index_verbose(env)

    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("added 0, updated 0, moved 0, removed 0, unchanged 7, failed 0 in ")
    assert f"; {len(bad)} known bad file(s) skipped" in second.stdout
    assert "loaded model" not in second.stderr, "an unchanged pass needs no model"
    assert "bad/" not in second.stderr, "known failures are not logged again"

    _, status, _ = run(capsys, "status")
    assert f"failed files: {len(bad)} (retried when they change, or with --full)" in status
    assert "  bad/empty.jpg: empty file (0 bytes)" in status


def test_a_bad_file_is_retried_when_it_changes_and_with_full(settings, archive, capsys):
    write_bad_files(archive / "bad")
    run(capsys, "index")
    save_photo(archive / "bad" / "empty.jpg", seed=55)  # fixed: now a real photo

    code, out, err = run(capsys, "index")
    assert code == EXIT_OK and out.startswith("added 1,") and "bad/" not in err
    _, status, _ = run(capsys, "status")
    assert "bad/empty.jpg" not in status

    code, out, err = run(capsys, "index", "--full")
    assert code == EXIT_OK and "failed 4 " in out and "failed: bad/notes.png: not an image" in err


def test_a_bad_file_that_is_deleted_is_forgotten(settings, archive, capsys):
    bad = write_bad_files(archive / "bad")
    run(capsys, "index")
    shutil.rmtree(archive / "bad")
    run(capsys, "index")
    _, status, _ = run(capsys, "status")
    assert "failed files: 0" in status and len(bad) > 0


# ---- folders that cannot be listed ----------------------------------------------------------------
NOBODY = 65534


@pytest.fixture
def shared_tmp(test_models):
    """A folder the unprivileged user can use (pytest's own tmp folders are root-only), with the models."""
    base = Path(tempfile.mkdtemp(prefix="findimage-nobody-"))
    base.chmod(0o777)
    for kind in ("image", "text"):
        shutil.copytree(test_models[kind], base / "models" / kind)
    for folder, _, files in os.walk(base):
        os.chmod(folder, 0o777)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o666)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _as_nobody(env: dict, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "findimage_cli", *argv]
    if os.geteuid() == 0:  # root lists every folder: drop to nobody, as the indexer's container runs
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(command, env={**os.environ, **env, "HOME": env["FINDIMAGE_DATA_DIR"]},
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_documents_under_a_folder_that_cannot_be_listed_are_kept(shared_tmp):
    archive, data = shared_tmp / "archive", shared_tmp / "data"
    for i in range(3):
        save_photo(archive / "locked" / f"{i}.jpg", seed=300 + i)
        save_photo(archive / "open" / f"{i}.jpg", seed=400 + i)
    for folder in (archive, archive / "locked", archive / "open"):
        folder.chmod(0o777)
    data.mkdir()
    data.chmod(0o777)
    env = {"FINDIMAGE_ARCHIVE": str(archive), "FINDIMAGE_DATA_DIR": str(data),
           "FINDIMAGE_IMAGE_MODEL": str(shared_tmp / "models" / "image"),
           "FINDIMAGE_TEXT_MODEL": str(shared_tmp / "models" / "text"), "HF_HUB_OFFLINE": "1"}
    first = _as_nobody(env, "index")
    assert first.returncode == 0 and first.stdout.startswith("added 6,"), first.stderr

    (archive / "locked").chmod(0o000)  # a permission change, or a stale network mount
    try:
        second = _as_nobody(env, "index")
    finally:
        (archive / "locked").chmod(0o777)

    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("added 0, updated 0, moved 0, removed 0, unchanged 3, failed 0 in ")
    assert "kept 3 document(s) under folders that could not be listed" in second.stdout
    status = _as_nobody(env, "status")
    assert "documents:    6" in status.stdout


# ---- a full disk ---------------------------------------------------------------------------------
def _index_with_file_size_limit(env: dict, limit_bytes: int) -> subprocess.CompletedProcess:
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "findimage_cli", "index"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, cwd=ROOT, preexec_fn=limit)


def test_a_full_disk_mid_pass_is_one_sentence_and_the_next_pass_completes(settings, env, archive, capsys):
    for i in range(60):
        save_photo(archive / "bulk" / f"{i:03d}.jpg", seed=500 + i, size=(160, 120))

    # An empty store's file is 256 KB (32 pages of 8 KB): at 768 KB a few batches fit (24 of 67 here).
    failed = _index_with_file_size_limit({**env, "FINDIMAGE_BATCH_SIZE": "8"}, 768 * 1024)

    assert failed.returncode == EXIT_ERROR, failed.stdout + failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"findimage: Could not write the index in {settings.data_dir} ("), \
        failed.stderr
    assert "free some disk space" in lines[0] and "Traceback" not in failed.stderr
    leftovers = [p.name for p in settings.data_dir.iterdir() if ".tmp" in p.name]
    assert leftovers == []
    written = sqlite3.connect(settings.data_dir / "findimage.sqlite").execute("SELECT count(*) FROM images")
    assert 0 < written.fetchone()[0] < 67, "the disk filled up mid-pass, after some batches were written"

    code, out, _ = run(capsys, "index")
    assert code == EXIT_OK, out
    assert len(documents(settings)) == 67
    state = json.loads((settings.data_dir / "indexer-state.json").read_text())
    assert state["failed"] == {} and state["pending_removal"] is None
    assert all(stat.S_ISREG(p.stat().st_mode) for p in settings.data_dir.iterdir())


@both_stores
def test_searches_leave_out_files_that_have_gone_and_fill_up_with_the_next(settings, indexed_archive, capsys):
    shutil.rmtree(indexed_archive / "events")  # 4 of 7: the removal is refused, the documents stay
    assert run(capsys, "index")[0] == EXIT_REFUSED
    assert len(documents(settings)) == 7

    code, out, _ = run(capsys, "search", "a photo", "-k", "3", "--json")

    assert code == EXIT_OK
    paths = [m["relative_path"] for m in json.loads(out)]
    assert len(paths) == 3 and all(p.startswith("nature/") for p in paths)
    code, out, _ = run(capsys, "search", "--image", str(indexed_archive / "nature" / "mountain-0.png"), "--json")
    assert [m["relative_path"] for m in json.loads(out)][0] == "nature/mountain-0.png"
    assert not any(m["relative_path"].startswith("events/") for m in json.loads(out))


def test_a_pass_that_lost_its_lease_stops_before_its_next_batch_and_removes_nothing(settings, archive):
    from findimage.backends import image_embedder
    from indexer.index_pass import IndexPass, PassRequest, PassSuperseded

    store = open_store(settings, writer=True)
    in_twos = dataclasses.replace(settings, batch_size=2)
    IndexPass(store, image_embedder(settings), in_twos).run()
    (archive / "nature" / "mountain-0.png").unlink()
    for i in range(6):
        save_photo(archive / "later" / f"{i}.jpg", seed=900 + i)
    batches_seen = []

    def taken_over() -> bool:  # the lease is lost once the first batch was written
        batches_seen.append(1)
        return len(batches_seen) > 1

    with pytest.raises(PassSuperseded, match="took over this index while this one was stalled"):
        IndexPass(store, image_embedder(settings), in_twos, PassRequest(superseded=taken_over)).run()
    paths = documents(settings)
    assert "nature/mountain-0.png" in paths, "nothing removed"
    assert len([p for p in paths if p.startswith("later/")]) == 2, "only the batch before the takeover"
    store.close()

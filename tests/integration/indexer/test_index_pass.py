"""The archive indexer as a team uses it: add, change, move, delete photos and index again."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from es_support import both_stores
from photos import save_photo, write_bad_files

from findimage.backends import open_store
from findimage.errors import ModelMismatch
from findimage.search import Searcher
from findimage.stores.base import META_LAST_PASS
from findimage.stores.embedded.store import EmbeddedStore
from indexer.lock import AlreadyRunning, pass_lock
from indexer.reading import read_and_decode
from indexer.run import index_once
from indexer.scan import ArchiveFile


def paths_in(store) -> set[str]:
    return set(store.file_states())


@both_stores
def test_first_pass_indexes_every_image_and_second_pass_touches_nothing(settings, archive):
    (archive / "readme.txt").write_text("not an image, not even looked at")
    (archive / ".hidden.jpg").write_bytes(b"")
    first = index_once(settings)
    assert (first.added, first.failed, first.embedded) == (7, 0, 7)
    second = index_once(settings)
    assert (second.added, second.updated, second.moved, second.removed, second.embedded) == (0, 0, 0, 0, 0)
    assert second.unchanged == 7
    store = open_store(settings)
    assert store.count() == 7
    doc = store.get(next(iter(store.file_states().values())).image_id)
    assert doc.image_embedding.shape == (512,) and abs(float((doc.image_embedding ** 2).sum()) - 1) < 1e-4
    sizes = {"events": (640, 480), "nature": (320, 240)}  # the `archive` fixture's photos
    for state in store.file_states().values():
        doc = store.get(state.image_id)
        path = settings.archive / doc.relative_path
        assert (doc.width, doc.height) == sizes[doc.relative_path.split("/")[0]], doc.relative_path
        assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and doc.size == path.stat().st_size


@both_stores
def test_change_delete_move_and_duplicate_cost_only_what_changed(settings, archive):
    index_once(settings)
    save_photo(archive / "events" / "2024" / "stage-0.jpg", seed=999)  # changed content
    (archive / "nature" / "mountain-1.png").unlink()  # deleted
    shutil.move(archive / "nature" / "mountain-2.png", archive / "moved-mountain.png")  # moved
    shutil.copy(archive / "events" / "2024" / "stage-1.jpg", archive / "copy-of-stage-1.jpg")  # duplicate
    save_photo(archive / "new" / "fresh.webp", seed=5, fmt="WEBP")  # new

    summary = index_once(settings)

    assert (summary.updated, summary.removed, summary.moved, summary.added) == (1, 1, 1, 2)
    assert summary.embedded == 2, "only the changed and the new file need the model"
    store = open_store(settings)
    assert paths_in(store) == {
        "events/2024/stage-0.jpg", "events/2024/stage-1.jpg", "events/2024/stage-2.jpg",
        "events/2024/stage-3.jpg", "nature/mountain-0.png", "moved-mountain.png", "copy-of-stage-1.jpg",
        "new/fresh.webp"}


@both_stores
def test_touched_file_with_same_content_is_not_embedded_again(settings, archive):
    index_once(settings)
    target = archive / "nature" / "mountain-0.png"
    os.utime(target, (time.time() + 60, time.time() + 60))
    summary = index_once(settings)
    assert summary.embedded == 0 and summary.updated == 0 and summary.unchanged == 7
    assert index_once(settings).unchanged == 7


def test_bad_files_are_reported_with_reason_and_do_not_stop_the_pass(settings, archive):
    expected = write_bad_files(archive / "bad")
    summary = index_once(settings)
    assert summary.added == 7
    reasons = dict(summary.failures)
    assert set(reasons) == {f"bad/{name}" for name in expected}
    for name, fragment in expected.items():
        assert fragment in reasons[f"bad/{name}"], (name, reasons[f"bad/{name}"])


def test_unreadable_file_gets_a_reason(tmp_path):
    secret = tmp_path / "secret.jpg"
    save_photo(secret, seed=1)
    secret.chmod(0o000)
    file = ArchiveFile("secret.jpg", secret, secret.stat().st_size, 1.0)
    assert "permission denied" in _as_unprivileged_user(lambda: read_and_decode(file).error)


def _as_unprivileged_user(work) -> str:
    """root reads every file, so run `work` in a forked child that dropped to nobody."""
    if os.geteuid() != 0:
        return work()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, str(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        return pipe.read().lower()


def test_symlinks_leaving_the_archive_and_hidden_folders_are_skipped(settings, archive, tmp_path):
    outside = tmp_path / "outside"
    save_photo(outside / "private.jpg", seed=3)
    (archive / "link-out").symlink_to(outside)
    (archive / "loop").symlink_to(archive)  # inside, but loops back
    save_photo(archive / ".cache" / "thumb.jpg", seed=4)
    save_photo(archive / "UPPER.JPEG", seed=6)
    index_once(settings)
    paths = paths_in(EmbeddedStore(settings.data_dir))
    assert "UPPER.JPEG" in paths
    assert not any(p.startswith(("link-out", ".cache")) for p in paths)
    assert not any(p.startswith("loop/loop") for p in paths)


@both_stores
def test_model_change_is_detected_and_full_rebuild_fixes_it(settings, archive, test_models, monkeypatch):
    index_once(settings)
    other = dataclasses.replace(settings, image_model=str(test_models["image"]) + "/")
    assert index_once(other).unchanged == 7  # same directory, same model
    moved_model = archive.parent / "other-model"
    shutil.copytree(test_models["image"], moved_model)
    with open(moved_model / "modules.json", "a") as f:
        f.write("\n")  # same layout, different files: a different model as far as the index knows
    changed = dataclasses.replace(settings, image_model=str(moved_model))
    with pytest.raises(ModelMismatch, match="findimage index --full"):
        index_once(changed)
    summary = index_once(changed, full=True)
    assert summary.updated == 7 and summary.embedded == 7
    assert index_once(changed).unchanged == 7


def test_a_second_pass_is_refused_while_one_runs(settings, archive):
    with pass_lock(settings.data_dir):
        with pytest.raises(AlreadyRunning, match="already running"):
            index_once(settings)


def _start_indexer(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "findimage_cli", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _db_count(settings) -> int:
    """Documents another process has written so far (committed / refreshed), read without the store."""
    if settings.uses_elasticsearch:
        from elasticsearch import Elasticsearch

        with Elasticsearch(settings.elasticsearch_url) as es:
            if not es.indices.exists_alias(name=settings.index_name):
                return 0
            es.indices.refresh(index=settings.index_name)
            return es.count(index=settings.index_name)["count"]
    try:
        with sqlite3.connect(settings.data_dir / "findimage.sqlite", timeout=5) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _many_photos(archive, n: int) -> None:
    for i in range(n):
        save_photo(archive / "bulk" / f"{i:04d}.jpg", seed=1000 + i, size=(320, 240))


@both_stores
def test_kill_minus_9_mid_pass_then_rerun_leaves_exactly_one_document_per_image(settings, env, archive):
    _many_photos(archive, 160)
    proc = _start_indexer({**env, "FINDIMAGE_BATCH_SIZE": "4"}, "index")
    deadline = time.monotonic() + 120
    while _db_count(settings) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _db_count(settings)
    assert 0 < partial < 167, "the kill must land mid-pass"

    summary = index_once(settings)
    store = open_store(settings)
    assert store.count() == 167 and len(paths_in(store)) == 167
    assert summary.added == 167 - partial and summary.failed == 0
    assert len(store.knn(store.get(next(iter(store.file_states().values())).image_id).image_embedding, 200)) == 167


def test_searches_keep_answering_while_a_pass_writes(settings, env, archive):
    _many_photos(archive, 120)
    searcher = Searcher(settings)
    proc = _start_indexer({**env, "FINDIMAGE_BATCH_SIZE": "4"}, "index")
    seen = []
    while proc.poll() is None:
        seen.append(len(searcher.by_text("a photo", k=500).matches))
    assert proc.wait() == 0, proc.stderr.read()
    assert seen == sorted(seen), "a reader never sees the index shrink mid-pass"
    assert any(0 < n < 127 for n in seen), "some searches ran while the pass was writing"
    assert len(searcher.by_text("a photo", k=500).matches) == 127


@both_stores
def test_last_pass_is_recorded(settings, archive):
    before = time.time()
    summary = index_once(settings)
    recorded = json.loads(open_store(settings).get_meta(META_LAST_PASS))
    assert (recorded["added"], recorded["updated"], recorded["moved"], recorded["removed"]) == (7, 0, 0, 0)
    assert (recorded["unchanged"], recorded["failed"], recorded["embedded"], recorded["failures"]) == (0, 0, 7, [])
    assert before <= recorded["finished_at"] <= time.time() and recorded["finished_at"] == summary.finished_at
    index_once(settings)
    again = json.loads(open_store(settings).get_meta(META_LAST_PASS))
    assert (again["added"], again["unchanged"], again["embedded"]) == (0, 7, 0), "the latest pass replaces it"

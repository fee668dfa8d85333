"""Indexing spread over `findimage worker` processes on a Redis queue (Debian's redis-server): the planner
(`findimage index`) hands out buckets, the workers embed them, and a worker killed with -9 mid-pass loses
nothing."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from bot_support import BotProcess, process_env
from es_support import both_stores
from photos import save_photo
from redis_support import Redis

from findimage.backends import open_store
from indexer.run import index_once

pytestmark = [pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
              pytest.mark.timeout(600)]
WORKER = [str(Path(sys.executable).parent / "findimage"), "worker"]
PHOTOS = 12  # in buckets of 2: six buckets, at most four queued at once


@pytest.fixture
def redis(tmp_path):
    server = Redis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis):
    return redis.url


@pytest.fixture
def queued(settings, env, redis_url, tmp_path):
    """Settings of a planner and its workers: small buckets, and a bucket a dead worker held goes back to
    the queue after 5 s."""
    for i in range(PHOTOS):
        save_photo(settings.archive / f"folder-{i % 3}" / f"photo-{i}.jpg", seed=700 + i)
    extra = {"FINDIMAGE_QUEUE_URL": redis_url, "FINDIMAGE_BUCKET_SIZE": "2", "FINDIMAGE_QUEUE_IN_FLIGHT": "4",
             "FINDIMAGE_QUEUE_VISIBILITY_SECONDS": "5", "FINDIMAGE_BATCH_SIZE": "2"}
    planner = dataclasses.replace(settings, queue_url=redis_url, bucket_size=2, queue_in_flight=4,
                                  queue_visibility_seconds=5.0, batch_size=2)
    workers: list[BotProcess] = []

    def start_worker(**overrides: str) -> BotProcess:
        worker = BotProcess(WORKER, process_env(env, **{**extra, **overrides}, PYTHONUNBUFFERED="1"), cwd=tmp_path)
        workers.append(worker)
        worker.wait_for_line("ready", timeout=120)
        return worker

    yield planner, start_worker
    for worker in workers:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(10)


def indexed_paths(settings) -> list[str]:
    store = open_store(settings)
    try:
        return sorted(store.file_states())
    finally:
        store.close()


def test_two_workers_index_the_archive_and_a_worker_killed_mid_pass_loses_nothing(queued):
    planner, start_worker = queued
    first, second = start_worker(), start_worker()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(summary=index_once(planner, progress=False)))
    thread.start()
    first.wait_for_line("succeeded", timeout=120)  # it finished a bucket, and is working on the next
    os.killpg(first.process.pid, signal.SIGKILL)
    third = start_worker()  # joins mid-pass and takes work
    thread.join(300)
    assert not thread.is_alive(), "the pass finished"
    summary = result["summary"]
    assert (summary.added, summary.failed, summary.embedded) == (PHOTOS, 0, PHOTOS)
    paths = indexed_paths(planner)
    assert paths == sorted(f"folder-{i % 3}/photo-{i}.jpg" for i in range(PHOTOS)) and len(set(paths)) == PHOTOS
    assert "succeeded" in third.output or "succeeded" in second.output

    again = index_once(planner, progress=False)  # nothing changed: nothing is queued
    assert (again.added, again.unchanged, again.embedded) == (0, PHOTOS, 0)


def test_a_planner_killed_mid_pass_resumes_without_embedding_finished_buckets_again(queued, env, tmp_path):
    planner, start_worker = queued
    worker = start_worker()
    values = process_env(env, FINDIMAGE_QUEUE_URL=planner.queue_url, FINDIMAGE_BUCKET_SIZE="2",
                         FINDIMAGE_QUEUE_IN_FLIGHT="1", FINDIMAGE_BATCH_SIZE="2", PYTHONUNBUFFERED="1")
    index = BotProcess([WORKER[0], "index"], values, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while len(indexed_paths(planner)) < 4:  # two buckets done
        assert time.monotonic() < deadline and index.process.poll() is None, index.output
        time.sleep(0.05)
    os.killpg(index.process.pid, signal.SIGKILL)
    index.process.wait(10)
    summary = index_once(planner, progress=False)
    # What the killed planner's buckets wrote (also those the worker finished after the kill) is unchanged
    assert summary.unchanged >= 4 and summary.added + summary.unchanged == PHOTOS and summary.failed == 0
    assert summary.embedded == summary.added, "the finished buckets' images are not embedded again"
    assert len(indexed_paths(planner)) == PHOTOS
    assert "succeeded" in worker.output


def test_a_bucket_taken_too_often_is_recorded_as_failed_files_not_retried_forever(monkeypatch, settings):
    from indexer import queue

    monkeypatch.setattr(queue, "_worker", queue.WorkerState(settings, store=None, embedder=None))  # type: ignore[arg-type]
    monkeypatch.setattr(queue, "_count_attempt", lambda app, bucket_id, ttl: queue.MAX_ATTEMPTS + 1)

    class Task:
        app = None

    answer = queue._embed_bucket(Task(), {"id": "p-1", "files": [["a.jpg", 1, 1.0], ["b.jpg", 2, 2.0]]})
    outcomes = [queue.Outcome.of_json(o) for o in answer["outcomes"]]
    assert [o.relative_path for o in outcomes] == ["a.jpg", "b.jpg"]
    assert all(o.error and f"stopped {queue.MAX_ATTEMPTS} times" in o.error for o in outcomes)


def test_status_names_the_queue_and_whether_a_pass_is_running(queued, capsys, monkeypatch, env):
    planner, _ = queued
    from findimage_cli import main

    for key, value in {**env, "FINDIMAGE_QUEUE_URL": planner.queue_url}.items():
        monkeypatch.setenv(key, value)
    assert main(["status"]) == 0
    assert f"queue:        {planner.queue_url}: no pass running" in capsys.readouterr().out


def test_without_a_worker_the_pass_embeds_in_its_own_process_and_says_so(queued, caplog):
    planner, _ = queued
    with caplog.at_level("WARNING", logger="indexer.run"):
        summary = index_once(planner, progress=False)
    assert (summary.added, summary.embedded) == (PHOTOS, PHOTOS)
    assert "no `findimage worker` with the image model" in caplog.text


def test_redis_restarting_without_its_queue_loses_no_pass(queued, redis):
    planner, start_worker = queued
    worker = start_worker()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(summary=index_once(planner, progress=False)))
    thread.start()
    worker.wait_for_line("succeeded", timeout=120)
    redis.stop()  # the queued buckets and the answers not yet read are gone with it
    time.sleep(2)
    redis.start()
    thread.join(300)
    assert not thread.is_alive(), "the pass finished"
    summary = result["summary"]
    assert (summary.added, summary.failed) == (PHOTOS, 0)
    assert len(indexed_paths(planner)) == PHOTOS


def finished_buckets(worker: BotProcess, at_least: int) -> int:
    """The buckets the worker says it finished (its log lines may trail the planner's last answer)."""
    deadline = time.monotonic() + 15
    while worker.output.count("succeeded") < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker.output.count("succeeded")


@both_stores
def test_a_full_rebuild_is_embedded_by_the_workers_and_swapped_in_by_the_planner(queued):
    planner, start_worker = queued
    worker = start_worker()
    assert index_once(planner, progress=False).added == PHOTOS
    before = finished_buckets(worker, PHOTOS // 2)

    rebuilt = index_once(planner, full=True, progress=False)

    assert (rebuilt.failed, rebuilt.embedded) == (0, PHOTOS)
    assert finished_buckets(worker, before + PHOTOS // 2) >= before + PHOTOS // 2, "the worker embedded the rebuild"
    assert indexed_paths(planner) == sorted(f"folder-{i % 3}/photo-{i}.jpg" for i in range(PHOTOS))
    store = open_store(planner)
    try:
        assert store.count() == PHOTOS
        if planner.uses_elasticsearch:  # written into the new generation, which the planner swapped in
            assert store.indices.concrete_indices() == [f"{planner.index_name}-v2"]
    finally:
        store.close()


def test_a_worker_with_another_image_model_is_not_asked_and_takes_no_bucket(queued, test_models, tmp_path, caplog):
    planner, start_worker = queued
    other = tmp_path / "other-model"
    shutil.copytree(test_models["image"], other)
    with open(other / "modules.json", "a") as f:
        f.write("\n")  # another model, as far as the index knows: its vectors must not enter this one
    stranger = start_worker(FINDIMAGE_IMAGE_MODEL=str(other))

    with caplog.at_level("WARNING", logger="indexer.run"):
        summary = index_once(planner, progress=False)

    assert (summary.added, summary.failed, summary.embedded) == (PHOTOS, 0, PHOTOS)
    assert "no `findimage worker` with the image model" in caplog.text
    assert "Task findimage.embed_bucket" not in stranger.output, "it never received a bucket"

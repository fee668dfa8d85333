"""Indexing spread over `findimage worker` processes on a Redis queue (Debian's redis-server): the planner
(`findimage index`) hands out buckets, the workers embed them, and a worker killed with -9 mid-pass loses
nothing."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as redis_client
import scraping
from bot_support import BotProcess, free_port, libraries_of_tree, process_env
from es_support import both_stores, es_only
from es_support import client as es_client
from photos import save_photo
from prometheus_client import REGISTRY
from redis_support import NoTLS, Redis, make_certificates
from rendered_text import error_dialog, street_sign
from scraping import get, scrape_until, wait_for_answer

from findimage.backends import image_embedder, open_store
from findimage.errors import EXIT_UNAVAILABLE
from findimage.search import Searcher
from indexer.queue import TASK, Planner, celery_app, queue_for
from indexer.run import index_once

pytestmark = [pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
              pytest.mark.timeout(600)]
WORKER = [str(Path(sys.executable).parent / "findimage"), "worker"]
PHOTOS = 12  # in buckets of 2: six buckets, at most four queued at once


PASSWORD = "Zq9/pw?with#all@of-them"  # every character that ends a URL's host for urllib, percent-encoded in the URL


@pytest.fixture
def redis(request, tmp_path):
    """With a password, as deployed; `tls` (indirect parametrization): TLS only too, with a throwaway CA."""
    tls = make_certificates(tmp_path / "tls") if getattr(request, "param", "plain") == "tls" else None
    server = Redis(tmp_path, password=PASSWORD, certificates=tls)
    try:
        server.start()
    except NoTLS:
        pytest.skip("this redis-server was built without TLS")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis):
    return redis.url


@pytest.fixture
def queued(settings, env, redis, redis_url, tmp_path):
    """Settings of a planner and its workers: small buckets, and a bucket a dead worker held goes back to
    the queue after 5 s."""
    for i in range(PHOTOS):
        save_photo(settings.archive / f"folder-{i % 3}" / f"photo-{i}.jpg", seed=700 + i)
    extra = {"FINDIMAGE_QUEUE_URL": redis_url, "FINDIMAGE_BUCKET_SIZE": "2", "FINDIMAGE_QUEUE_IN_FLIGHT": "4",
             "FINDIMAGE_QUEUE_VISIBILITY_SECONDS": "5", "FINDIMAGE_BATCH_SIZE": "2"}
    ca = redis.certificates["ca"] if redis.certificates else None
    if ca:
        extra["FINDIMAGE_QUEUE_TLS_CA_FILE"] = str(ca)
    planner = dataclasses.replace(settings, queue_url=redis_url, bucket_size=2, queue_in_flight=4,
                                  queue_visibility_seconds=5.0, batch_size=2, queue_tls_ca_file=ca)
    workers: list[BotProcess] = []

    def start_worker(stderr_apart: bool = False, **overrides: str) -> BotProcess:
        worker = BotProcess(WORKER, process_env(env, **{**extra, **overrides}, PYTHONUNBUFFERED="1"), cwd=tmp_path,
                            stderr_apart=stderr_apart)
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


def test_a_worker_reads_the_text_of_the_pictures_it_embedded(queued):
    planner, start_worker = queued
    error_dialog().image.save(planner.archive / "folder-0" / "Screenshot.png")
    street_sign().image.save(planner.archive / "folder-1" / "IMG_4102.jpg")
    start_worker(FINDIMAGE_OCR="on", FINDIMAGE_QUEUE_VISIBILITY_SECONDS="300")  # its first bucket starts the readers
    # The planner's own reader cannot even load: what is read, its worker read.
    reading = dataclasses.replace(planner, ocr=True, ocr_memory_mb=16, queue_visibility_seconds=300.0)
    summary = index_once(reading, progress=False)
    assert (summary.added, summary.text_read, summary.text_failed) == (PHOTOS + 2, PHOTOS + 2, 0)
    searcher = Searcher(reading)
    try:
        assert searcher.by_text("disk quota exceeded", k=1).matches[0].relative_path == "folder-0/Screenshot.png"
        assert searcher.by_text("Schillerplatz", k=1).matches[0].relative_path == "folder-1/IMG_4102.jpg"
    finally:
        searcher.store.close()


def test_a_worker_serves_its_buckets_and_readiness_on_the_metrics_port(queued):
    planner, start_worker = queued
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_worker(FINDIMAGE_METRICS_PORT=str(port), FINDIMAGE_METRICS_HOST="127.0.0.1")
    ready = wait_for_answer(base, "/readyz", (200, "Ready: 0 documents in the archive.\n"))
    summary = index_once(planner, progress=False)
    samples = scrape_until(base, lambda s: scraping.value(s, "findimage_worker_buckets_total", outcome="done") == 6)

    assert summary.embedded == PHOTOS and ready[0] == 200
    assert scraping.value(samples, "findimage_worker_buckets_total", outcome="failed") == 0
    assert get(base, "/healthz")[0] == 200


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

    failed = lambda: REGISTRY.get_sample_value("findimage_worker_buckets_total", {"outcome": "failed"})  # noqa: E731
    before = failed()
    answer = queue._embed_bucket(Task(), {"id": "p-1", "files": [["a.jpg", 1, 1.0], ["b.jpg", 2, 2.0]]})
    outcomes = [queue.Outcome.of_json(o) for o in answer["outcomes"]]
    assert [o.relative_path for o in outcomes] == ["a.jpg", "b.jpg"]
    assert all(o.error and f"stopped {queue.MAX_ATTEMPTS} times" in o.error for o in outcomes)
    assert failed() - before == 1, "counted as a failed bucket"


def test_status_names_the_queue_and_whether_a_pass_is_running(queued, redis, capsys, monkeypatch, env):
    planner, _ = queued
    from findimage_cli import main

    for key, value in {**env, "FINDIMAGE_QUEUE_URL": planner.queue_url}.items():
        monkeypatch.setenv(key, value)
    assert main(["status"]) == 0
    assert f"queue:        redis://127.0.0.1:{redis.port}/0: no pass running" in capsys.readouterr().out


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
    worker.wait_for_line("Connected to redis://:**@127.0.0.1")  # Celery logs the URL, masked
    assert "Zq9" not in worker.output, "the password appears nowhere in its log, connection errors included"


def test_a_worker_in_json_logs_json_lines_only_and_names_the_pass_of_its_buckets(queued):
    """Celery configures logging unless told not to: the worker keeps findimage's, at DEBUG too."""
    planner, start_worker = queued
    (planner.archive / "folder-0" / "broken.jpg").write_bytes(b"")
    worker = start_worker(stderr_apart=True, FINDIMAGE_LOG_FORMAT="json", FINDIMAGE_LOG_LEVEL="DEBUG")
    summary = index_once(planner, progress=False)
    finished_buckets(worker, 1)
    assert worker.stop() == 0
    worker.read_to_end()

    assert (summary.added, summary.failed) == (PHOTOS, 1)
    entries = []
    for line in worker.stderr_lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n" + "\n".join(worker.stderr_lines)) from None
    assert {e["level"] for e in entries} >= {"DEBUG", "INFO", "WARNING"}
    assert any(e["logger"] == "celery.app.trace" and "succeeded" in e["message"] for e in entries)
    (skipped,) = [e for e in entries if e["logger"] == "indexer.embedding"]
    assert skipped["message"].startswith("skipped folder-0/broken.jpg") and len(skipped["pass_id"]) == 12
    assert "transport:" not in "\n".join(worker.stdout_lines), "no banner"


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


def test_a_worker_with_an_onnx_model_embeds_the_buckets_without_loading_torch(queued, test_models):
    planner, start_worker = queued
    model = str(test_models["clip-onnx"])
    onnx = dataclasses.replace(planner, image_model=model, text_model=model)
    worker = start_worker(FINDIMAGE_IMAGE_MODEL=model, FINDIMAGE_TEXT_MODEL=model)

    summary = index_once(onnx, progress=False)

    assert (summary.added, summary.failed, summary.embedded) == (PHOTOS, 0, PHOTOS)
    assert "succeeded" in worker.output, "the worker embedded the buckets"
    libraries = libraries_of_tree(worker.process.pid)
    assert any("onnxruntime" in library for library in libraries)
    assert not [library for library in libraries if "torch" in Path(library).name], "torch is never loaded"
    searcher = Searcher(onnx)  # the index answers a query embedded by the same model, in this process
    try:
        assert len(searcher.by_text("a photo", k=3).matches) == 3
    finally:
        searcher.store.close()


# ---- who may use the queue ---------------------------------------------------------------------------
def cli_run(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([WORKER[0], *argv], env=process_env(env), capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("redis", ["tls"], indirect=True)
def test_a_queue_with_a_password_over_tls_indexes_through_a_worker_and_says_what_is_wrong(queued, redis, env):
    planner, start_worker = queued
    assert planner.queue_url.startswith("rediss://:Zq9%2Fpw%3Fwith%23all%40of-them@127.0.0.1:")
    worker = start_worker()
    summary = index_once(planner, progress=False)
    assert (summary.added, summary.failed, summary.embedded) == (PHOTOS, 0, PHOTOS)
    assert "succeeded" in worker.output, "the worker embedded them, over TLS"
    assert "Zq9" not in worker.output

    public = f"rediss://127.0.0.1:{redis.port}/0"
    tls = {"FINDIMAGE_QUEUE_URL": planner.queue_url, "FINDIMAGE_QUEUE_TLS_CA_FILE": str(redis.certificates["ca"])}
    wrong_password = {**tls, "FINDIMAGE_QUEUE_URL": planner.queue_url.replace("Zq9%2Fpw", "Zq9%2Fxx")}
    no_ca = {"FINDIMAGE_QUEUE_URL": planner.queue_url}
    other_ca = {**tls, "FINDIMAGE_QUEUE_TLS_CA_FILE": str(redis.certificates["other_ca"])}
    plain = {"FINDIMAGE_QUEUE_URL": planner.queue_url.replace("rediss://", "redis://")}
    untrusted = "has a TLS certificate this process does not trust (set FINDIMAGE_QUEUE_TLS_CA_FILE to the CA that " \
                "signed it)"
    for values, said in ((tls, f"{public}: no pass running"),
                         (wrong_password, f"{public} refused the password (check the one in FINDIMAGE_QUEUE_URL)"),
                         (no_ca, f"{public} {untrusted}"), (other_ca, f"{public} {untrusted}"),
                         (plain, f"redis://127.0.0.1:{redis.port}/0 closed the connection (a plain redis:// URL on "
                                 "Redis's TLS port?)")):
        status = cli_run({**env, **values}, "-v", "status")
        assert status.returncode == 0 and f"queue:        {said}\n" in status.stdout, status.stdout + status.stderr
        assert "Zq9" not in status.stdout + status.stderr and "Traceback" not in status.stderr
    for values, said in ((wrong_password, "refused the password (check the one in FINDIMAGE_QUEUE_URL)"),
                         (no_ca, untrusted)):
        refused = cli_run({**env, **values}, "worker")
        assert refused.returncode == EXIT_UNAVAILABLE
        assert refused.stderr.strip().splitlines()[-1] == f"findimage: The queue at {public} {said}."
        assert "Zq9" not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr


def test_a_wrong_password_is_tried_once_and_said_at_once(redis, env):
    """No retry mends a wrong password: `status` and a starting worker log in once each (Redis's ACL LOG
    counts the failed logins) and say what is wrong, instead of retrying for the connection's timeout."""
    wrong = {"FINDIMAGE_QUEUE_URL": redis.url.replace("Zq9%2Fpw", "Zq9%2Fxx")}
    status = cli_run({**env, **wrong}, "status")
    refused = cli_run({**env, **wrong}, "worker")

    assert "refused the password (check the one in FINDIMAGE_QUEUE_URL)" in status.stdout
    assert refused.returncode == EXIT_UNAVAILABLE and "refused the password" in refused.stderr
    client = redis_client.Redis(host="127.0.0.1", port=redis.port, password=PASSWORD)
    try:
        failed_logins = [entry for entry in client.acl_log() if entry["reason"] == "auth"]
    finally:
        client.close()
    assert sum(entry["count"] for entry in failed_logins) == 2


def test_a_worker_answers_no_broadcast_and_is_found_by_a_ping_on_its_models_queue(queued):
    planner, start_worker = queued
    worker = start_worker()
    app = celery_app(planner)
    try:
        assert app.control.ping(timeout=2) == [], "remote control is off: no worker answers a broadcast"
        app.control.broadcast("shutdown")  # whoever can write to Redis could stop every worker with this
        found = Planner(planner, image_embedder(planner).model_id, app=app).workers()
    finally:
        app.close()
    assert len(found) == 1 and found[0].endswith(f":{worker.process.pid}"), found
    assert worker.process.poll() is None, "the worker is still running"
    assert "shutdown" not in worker.output.lower(), worker.output


def send_bucket(planner, bucket: dict) -> dict:
    """A bucket put on a worker's queue as anyone who can write to Redis could: its answer."""
    app = celery_app(planner)
    try:
        result = app.send_task(TASK, args=[bucket], queue=queue_for(image_embedder(planner).model_id))
        return result.get(timeout=120)
    finally:
        app.close()


def forged(name: str, *paths: str, index: str | None = None, archive: Path) -> dict:
    files = []
    for path in paths:
        try:
            stat = (archive / path).stat()
            files.append([path, stat.st_size, stat.st_mtime])
        except OSError:
            files.append([path, 1, 1.0])
    return {"id": f"forged-{name}", "files": files, "full": False, "index": index}


def test_a_worker_refuses_hidden_files_and_paths_out_of_the_archive_and_embeds_none_of_them(queued, tmp_path):
    planner, start_worker = queued
    archive = planner.archive
    save_photo(archive / ".hidden" / "private.jpg", seed=1)
    save_photo(archive / ".draft.jpg", seed=2)
    save_photo(tmp_path / "outside" / "secret.jpg", seed=3)
    (archive / "escape").symlink_to(tmp_path / "outside")
    worker = start_worker()
    outside = str(tmp_path / "outside" / "secret.jpg")
    answer = send_bucket(planner, forged("paths", ".hidden/private.jpg", ".draft.jpg", "escape/secret.jpg",
                                         "../outside/secret.jpg", outside, "folder-0/photo-0.jpg", archive=archive))

    errors = {o["relative_path"]: o["error"] for o in answer["outcomes"]}
    refused = "refused by its worker: not an archive image the scan lists"
    assert errors == {".hidden/private.jpg": f"{refused} (a hidden file or folder)",
                      ".draft.jpg": f"{refused} (a hidden file or folder)",
                      "escape/secret.jpg": f"{refused} (a link leading out of the archive)",
                      "../outside/secret.jpg": f"{refused} (not a path inside the archive)",
                      outside: f"{refused} (not a path inside the archive)",
                      "folder-0/photo-0.jpg": None}, "the archive image in it is embedded as usual"
    assert indexed_paths(planner) == ["folder-0/photo-0.jpg"]
    assert "refused (a hidden file or folder)" in worker.wait_for_line("private.jpg refused")

    answer = send_bucket(planner, forged("index", "folder-0/photo-3.jpg", index="another-index", archive=archive))
    assert answer["refused"] == "The embedded store has no rebuild in progress to write into ('another-index')."
    assert [o["error"] for o in answer["outcomes"]] == [f"refused by its worker: {answer['refused']}"]
    assert indexed_paths(planner) == ["folder-0/photo-0.jpg"], "nothing written for a refused bucket"
    worker.wait_for_line("bucket forged-index refused, none of its 1 files embedded")

    malformed = send_bucket(planner, {"id": ["not", "a", "bucket"], "files": "x"})
    assert malformed == {"worker": answer["worker"], "refused": "malformed", "outcomes": []}


@es_only
def test_a_worker_refuses_a_bucket_naming_the_rollback_copy_on_elasticsearch(queued):
    planner, start_worker = queued
    worker = start_worker()
    assert index_once(planner, progress=False).added == PHOTOS
    index_once(planner, full=True, progress=False)  # v2 is live, v1 kept as the rollback copy
    rollback, live = f"{planner.index_name}-v1", f"{planner.index_name}-v2"
    with es_client() as es:
        before = es.count(index=rollback)["count"]
        es.delete_by_query(index=live, query={"term": {"relative_path": "folder-0/photo-0.jpg"}}, refresh=True)

    answer = send_bucket(planner, forged("rollback", "folder-0/photo-0.jpg", index=rollback, archive=planner.archive))

    assert answer["refused"] == (f"'{rollback}' is neither the live index of {planner.index_name} nor its rebuild "
                                 "in progress; nothing is written into it.")
    with es_client() as es:
        es.indices.refresh(index=f"{planner.index_name}-v*")
        assert es.count(index=rollback)["count"] == before
    assert "folder-0/photo-0.jpg" not in indexed_paths(planner)
    assert "refused" in worker.wait_for_line("bucket forged-rollback refused")

    answer = send_bucket(planner, forged("live", "folder-0/photo-0.jpg", index=live, archive=planner.archive))
    assert "refused" not in answer and answer["outcomes"][0]["error"] is None, "the live index is written as usual"
    assert "folder-0/photo-0.jpg" in indexed_paths(planner)

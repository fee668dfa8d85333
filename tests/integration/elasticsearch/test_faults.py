"""Elasticsearch faults as an operator meets them: documents the server refuses, a server that is
down, and a server stopped in the middle of an indexing pass and started again."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from es_support import (
    ES_URL,
    SecondServer,
    client,
    dead_url,
    es_only,
    needs_es,
    retries_logged,
    scratch_index,
)
from photos import save_photo

from findimage import __version__
from findimage.backends import open_store
from findimage.config import ElasticsearchSettings
from findimage.errors import StoreError
from findimage.records import ImageDoc, image_id_for
from findimage.stores.elasticsearch.store import ElasticsearchStore
from findimage_cli import EXIT_UNAVAILABLE, main
from indexer.run import index_once

pytestmark = pytest.mark.timeout(420)


def _doc(path: str, vector) -> ImageDoc:
    return ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, np.asarray(vector, np.float32), f"sha-{path}",
                    1, 1.0, 64, 48, time.time(), "m1")


@pytest.mark.elasticsearch
@pytest.mark.skipif(not ES_URL, reason=needs_es[1].kwargs["reason"])
def test_a_bulk_reports_each_rejected_document_and_keeps_the_others():
    good = np.random.default_rng(1).standard_normal((3, 512))
    nan = good[0].copy()
    nan[7] = np.nan
    with scratch_index() as (url, alias):
        store = ElasticsearchStore(client(url), ElasticsearchSettings(elasticsearch_url=url, index_name=alias))
        with pytest.raises(StoreError) as caught:
            store.upsert([_doc("ok/a.jpg", good[0]), _doc("bad/nan.jpg", nan), _doc("ok/b.jpg", good[1]),
                          _doc("bad/short.jpg", good[2][:100]), _doc("bad/zero.jpg", np.zeros(512)),
                          _doc("ok/c.jpg", good[2])])
        reasons = dict(caught.value.failures)
        assert set(reasons) == {"bad/nan.jpg", "bad/short.jpg", "bad/zero.jpg"}
        assert "NaN" in reasons["bad/nan.jpg"]
        assert "different number of dimensions [100]" in reasons["bad/short.jpg"]
        assert "zero magnitude" in reasons["bad/zero.jpg"]
        assert all("\n" not in r and len(r) <= 300 for r in reasons.values()), "one line per file"
        assert store.count() == 3 and set(store.file_states()) == {"ok/a.jpg", "ok/b.jpg", "ok/c.jpg"}


@es_only
def test_rejected_documents_are_reported_per_file_and_retried_next_pass(settings, archive, capsys):
    es, alias = client(settings.elasticsearch_url), settings.index_name
    pipeline = f"{alias}-refuse-nature"  # a misconfigured ingest pipeline: refuses one folder
    es.ingest.put_pipeline(id=pipeline, processors=[{"fail": {
        "if": "ctx.relative_path.startsWith('nature/')", "message": "refused by pipeline {{relative_path}}"}}])
    try:
        open_store(settings, writer=True)  # the indexer creates the index
        es.indices.put_settings(index=alias, settings={"index.default_pipeline": pipeline})

        assert main(["index"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("added 4, updated 0, moved 0, removed 0, unchanged 0, failed 3 ")
        for i in range(3):
            assert (f"failed: nature/mountain-{i}.png: store rejected it: refused by pipeline "
                    f"nature/mountain-{i}.png") in err

        es.indices.put_settings(index=alias, settings={"index.default_pipeline": "_none"})  # fixed
        second = index_once(settings)
        assert (second.added, second.unchanged, second.failed) == (3, 4, 0), "the refused files are retried"
        assert open_store(settings).count() == 7
    finally:
        es.ingest.delete_pipeline(id=pipeline)


@pytest.mark.parametrize("argv", [["status"], ["search", "a snowy mountain"], ["index"]])
def test_the_cli_says_in_one_sentence_that_elasticsearch_is_down(settings, archive, monkeypatch, capsys, caplog,
                                                                 argv):
    url = dead_url()
    monkeypatch.setenv("ELASTICSEARCH_URL", url)
    assert main(argv) == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    # status says which store it is before asking it anything; search and index print nothing
    expected_out = (f"version:      {__version__}\nstore:        elasticsearch ({url}, index my-image-embeddings)\n"
                    if argv == ["status"] else "")
    assert out == expected_out
    assert err.count("\n") == 1
    assert err == (f"findimage: Elasticsearch at {url} is not reachable (connection refused): check that it is "
                   "running and that ELASTICSEARCH_URL is right.\n")
    assert retries_logged(caplog) == [], "a server that cannot be reached is reported at once, not waited for"


# ---- a second server, stopped mid-pass ----------------------------------------------------------------
@pytest.fixture(scope="session")
def second_server() -> str:
    """A server of its own with fresh data (conftest starts it in the background at collection)."""
    if not ES_URL:
        pytest.skip(needs_es[1].kwargs["reason"])
    try:
        return SecondServer.wait()
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _count(url: str, alias: str) -> int:
    try:
        with client(url) as es:
            if not es.indices.exists_alias(name=alias):
                return 0
            es.indices.refresh(index=alias)
            return es.count(index=alias)["count"]
    except Exception:  # noqa: BLE001 - not up (yet)
        return 0


@pytest.mark.elasticsearch
def test_elasticsearch_stopped_mid_pass_and_started_again_loses_nothing(second_server, env, settings, archive,
                                                                        monkeypatch, capsys, tmp_path):
    for i in range(160):
        save_photo(archive / "bulk" / f"{i:04d}.jpg", seed=5000 + i, size=(320, 240))
    alias = "faults"
    work_env = {**os.environ, **env, "ELASTICSEARCH_URL": second_server, "FINDIMAGE_INDEX": alias,
                "FINDIMAGE_BATCH_SIZE": "4"}
    log = tmp_path / "index.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "findimage_cli", "index"], env=work_env,
                                stdout=subprocess.PIPE, stderr=log_file, text=True)
    try:
        deadline = time.monotonic() + 120
        while _count(second_server, alias) < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        written = _count(second_server, alias)
        SecondServer.script("stop")
        assert proc.poll() is None, f"the pass must still be running when the server goes away: {log.read_text()}"
        assert 20 <= written < 167

        # Meanwhile the CLI says what is wrong, and the indexer waits instead of giving up.
        monkeypatch.setenv("ELASTICSEARCH_URL", second_server)
        monkeypatch.setenv("FINDIMAGE_INDEX", alias)
        assert main(["status"]) == EXIT_UNAVAILABLE
        assert "is not reachable (connection refused)" in capsys.readouterr().err
        deadline = time.monotonic() + 120
        while "Retrying in" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert "Retrying in" in log.read_text() and proc.poll() is None, "the indexer retries while it is down"

        SecondServer.script("start", "--keep-data")
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "not reachable" in err and "Retrying in" in err, "the outage was logged with the retries"
    assert "Traceback" not in err
    assert out.startswith("added 167, updated 0, moved 0, removed 0, unchanged 0, failed 0 "), out

    on_second = dataclasses.replace(settings, elasticsearch_url=second_server, index_name=alias)
    store = open_store(on_second)
    states = store.file_states()
    assert store.count() == 167 and len(states) == 167, "every file exactly once"
    assert {p for p in states if p.startswith("bulk/")} == {f"bulk/{i:04d}.jpg" for i in range(160)}
    again = index_once(on_second)
    assert (again.unchanged, again.added, again.embedded) == (167, 0, 0), "nothing was lost or half-written"


@es_only
def test_a_bulk_refused_with_429_is_repeated_until_elasticsearch_takes_it(settings, archive, caplog):
    """A flood-stage disk block answers every write with 429: the pass waits, then writes everything."""
    import logging
    import threading

    es, alias = client(settings.elasticsearch_url), settings.index_name
    open_store(settings, writer=True)  # the indexer creates the index
    es.indices.put_settings(index=alias, settings={"index.blocks.read_only_allow_delete": True})
    caplog.set_level(logging.WARNING, logger="indexer.retry")
    outcome: dict = {}
    passing = threading.Thread(target=lambda: outcome.update(summary=index_once(settings)))
    try:
        passing.start()
        refused = "could not take 7 document(s) now"
        deadline = time.monotonic() + 120
        while not any(refused in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.1)
        status = es.indices.stats(index=alias)["_all"]["primaries"]["docs"]["count"]
    finally:
        es.indices.put_settings(index=alias, settings={"index.blocks.read_only_allow_delete": None})
    passing.join(300)

    message = next(r.getMessage() for r in caplog.records if refused in r.getMessage())
    assert "429" in message or "TOO_MANY_REQUESTS" in message, message
    assert status == 0, "nothing was written while the block held"
    assert outcome["summary"].added == 7 and open_store(settings).count() == 7

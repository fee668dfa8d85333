"""A cluster on the basic license, as every self-generated trial becomes after 30 days: Elasticsearch
refuses `_infer` for a third-party model (403 security_exception "current license is non-compliant for
[ml]"), and cannot import one either (no model: 404). findimage says so in one sentence (status, log,
CLI, bot) and, unless FINDIMAGE_TEXT_FALLBACK=off, answers text queries with the local text model.

The server (FINDIMAGE_TEST_ES_PORT_BASIC) starts on the basic license; a model is put in it during a
trial that is then ended (POST _license/start_basic), so the refusal is the one a cluster gives after
its trial ran out with the text model still deployed."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from es_support import BasicLicenseServer, client, needs_es, scratch_index

from findimage.backends import text_embedder
from findimage.config import ElasticsearchSettings, load_settings
from findimage.errors import LicenseRefused
from findimage.models.clip import normalise_rows
from findimage.models.fallback import FallbackTextEmbedder
from findimage.records import ImageDoc, image_id_for
from findimage.stores.elasticsearch.infer import InferTextEmbedder, license_sentence
from findimage.stores.elasticsearch.store import ElasticsearchStore

pytestmark = needs_es

TRIAL_MODEL = "findimage-test-trial-model"
MODEL_CONFIG = {"model_type": "pytorch", "input": {"field_names": ["text_field"]}, "inference_config": {
    "text_embedding": {"embedding_size": 512, "tokenization": {"bert": {"max_sequence_length": 128}}}}}
SENTENCE = license_sentence("basic")


@pytest.fixture(scope="session")
def basic_server() -> str:
    url = BasicLicenseServer.wait()
    with client(url) as es:
        if not es.ml.get_trained_models(model_id=f"{TRIAL_MODEL}*")["count"]:
            started = es.license.post_start_trial(acknowledge=True)
            assert started.get("trial_was_started"), f"{url} had its trial already: restart it with fresh data"
            es.ml.put_trained_model(model_id=TRIAL_MODEL, **MODEL_CONFIG)
            es.license.post_start_basic(acknowledge=True)
        assert es.license.get()["license"]["type"] == "basic"
    return url


@pytest.fixture
def basic_env(env, basic_server):
    with scratch_index(basic_server, prefix="test-license") as (url, alias):
        yield {**env, "ELASTICSEARCH_URL": url, "FINDIMAGE_INDEX": alias, "FINDIMAGE_TEXT_EMBEDDER": "elasticsearch",
               "FINDIMAGE_INFER_MODEL_ID": TRIAL_MODEL}


def findimage(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findimage_cli", *argv], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_the_refusal_elasticsearch_gives(basic_server):
    """What 8.12 answers: 403 for a model that is there, 404 for one that could not be imported."""
    with client(basic_server) as es:
        for model_id, status, reason in ((TRIAL_MODEL, 403, "current license is non-compliant for [ml]"),
                                         ("findimage-test-no-such-model", 404, "Could not find trained model")):
            with pytest.raises(Exception) as caught:
                es.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": "a query"}])
            assert caught.value.meta.status == status and reason in str(caught.value)


def index_some(env: dict, count: int = 6) -> None:
    """Documents with unit vectors in the 512-dim space, straight into the store (their files present, of
    the size and modification time the documents record)."""
    files = []
    for i in range(count):
        (Path(env["FINDIMAGE_ARCHIVE"]) / "p").mkdir(parents=True, exist_ok=True)
        file = Path(env["FINDIMAGE_ARCHIVE"]) / "p" / f"{i}.jpg"
        file.write_bytes(b"x" * (i + 1))
        files.append(file.stat())
    store = ElasticsearchStore(client(env["ELASTICSEARCH_URL"]), ElasticsearchSettings(
        elasticsearch_url=env["ELASTICSEARCH_URL"], index_name=env["FINDIMAGE_INDEX"]))
    vectors = normalise_rows(np.random.default_rng(7).normal(size=(count, 512)))
    store.upsert([ImageDoc(image_id_for(f"p/{i}.jpg"), f"{i}.jpg", f"p/{i}.jpg", v, f"sha-{i}", files[i].st_size,
                           files[i].st_mtime, 64, 48, time.time(), "vectors") for i, v in enumerate(vectors)])
    store.checkpoint()


def test_search_answers_with_the_local_text_model_and_says_why_once(basic_env):
    env = basic_env
    index_some(env)
    run = findimage(env, "search", "a mountain", "--json", "-k", "3")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(SENTENCE) == 1, run.stderr
    assert "Text queries use the local text model" in run.stderr
    local = findimage({**env, "FINDIMAGE_TEXT_EMBEDDER": "local"}, "search", "a mountain", "--json", "-k", "3")
    assert local.returncode == 0 and local.stderr == ""
    assert json.loads(run.stdout) == json.loads(local.stdout) and len(json.loads(run.stdout)) == 3


@pytest.mark.parametrize("model_id", [TRIAL_MODEL, "findimage-test-no-such-model"])
def test_without_the_fallback_search_fails_with_the_license_sentence(basic_env, model_id):
    run = findimage({**basic_env, "FINDIMAGE_TEXT_FALLBACK": "off", "FINDIMAGE_INFER_MODEL_ID": model_id},
                    "search", "a mountain")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == f"findimage: {SENTENCE}\n"


def test_status_shows_the_license_sentence(basic_env):
    run = findimage(basic_env, "status")
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("text _infer:"))
    assert line.split(":", 1)[1].strip().startswith(SENTENCE) and "the local text model" in line


def test_the_bot_falls_back_at_start_and_logs_it_once(basic_env, monkeypatch, caplog):
    for key, value in basic_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(env_file=None)
    embedder = text_embedder(settings)
    assert isinstance(embedder, FallbackTextEmbedder)
    with caplog.at_level(logging.WARNING, logger="findimage.models.fallback"):
        embedder.load()  # the bot's warm-up: the start check is refused, the local model is loaded
        vectors = [embedder.embed_texts([f"query {i}"]) for i in range(3)]
    # Its own logger's records: caplog also catches what a thread another test left behind logs meanwhile.
    fallback = [r for r in caplog.records if r.name == "findimage.models.fallback"]
    assert [r.getMessage().startswith(SENTENCE) for r in fallback] == [True]
    assert embedder.model_id == embedder.local.model_id
    assert all(v.shape == (1, 512) for v in vectors)


def test_the_bot_answer_when_nothing_can_vectorize_text(basic_env, monkeypatch):
    from bot.errors import user_message
    from findimage.i18n import english

    settings = load_settings({**basic_env, "FINDIMAGE_TEXT_FALLBACK": "off"}, env_file=None)
    embedder = text_embedder(settings)
    assert isinstance(embedder, InferTextEmbedder)
    with pytest.raises(LicenseRefused) as caught:
        embedder.embed_texts(["a mountain"])
    assert str(caught.value) == SENTENCE
    answer = user_message(caught.value, english())
    assert answer.startswith("I could not search by text because Elasticsearch's license does not allow")


def test_a_licensed_cluster_is_not_blamed(settings):
    """On the trial server a missing model is a missing model, not a license problem."""
    from es_support import ES_URL

    embedder = InferTextEmbedder.from_settings(dataclasses.replace(
        settings, elasticsearch_url=ES_URL, infer_model_id="findimage-test-no-such-model"))
    assert embedder.license() == "trial"
    with pytest.raises(Exception) as caught:
        embedder.embed_texts(["a mountain"])
    assert not isinstance(caught.value, LicenseRefused) and "is not in Elasticsearch" in str(caught.value)

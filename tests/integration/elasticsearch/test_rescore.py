"""Exact re-ranking on Elasticsearch: int8_hnsw ranks by 8-bit codes, so candidates whose cosines differ by
less than the quantization error come back in the wrong order; the oversampled candidates re-ranked by the
stored float vectors give the exact top k, under filters too."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from es_support import client, es_only

from findimage.query import query_filters
from findimage.records import ImageDoc, cosine_to_score, image_id_for
from findimage.stores.elasticsearch.store import ElasticsearchStore


def near_ties(query: np.ndarray, count: int) -> np.ndarray:
    """Unit vectors whose cosines with `query` step down by 5e-5: far below int8's resolution."""
    rng = np.random.default_rng(7)
    vectors = []
    for i in range(count):
        noise = rng.standard_normal(512)
        noise -= noise.dot(query) * query
        noise /= np.linalg.norm(noise)
        cos = 0.95 - 5e-5 * i
        vectors.append(cos * query + np.sqrt(1 - cos * cos) * noise)
    return np.asarray(vectors, dtype=np.float32)


def docs(vectors: np.ndarray) -> list[ImageDoc]:
    return [ImageDoc(image_id_for(f"{'a' if i % 2 else 'b'}/{i:02d}.jpg"), f"{i:02d}.jpg",
                     f"{'a' if i % 2 else 'b'}/{i:02d}.jpg", v, f"sha-{i}", 1, 1.0, 8, 8, time.time(), "m")
            for i, v in enumerate(vectors)]


@es_only
def test_re_ranking_gives_the_exact_top_k_where_int8_codes_alone_do_not(settings):
    query = np.random.default_rng(3).standard_normal(512)
    query /= np.linalg.norm(query)
    vectors = near_ties(query, 60)
    es = client(settings.elasticsearch_url)
    writer = ElasticsearchStore(es, settings)
    writer.upsert(docs(vectors))
    writer.checkpoint()
    exact = np.argsort(-(vectors @ query.astype(np.float32)), kind="stable")

    def top(oversample: float, k: int = 10, folder: str | None = None) -> list:
        store = ElasticsearchStore(es, dataclasses.replace(settings, es_rescore_oversample=oversample))
        return store.knn(query, k, num_candidates=100, filters=query_filters(folder=folder))

    codes_only = [m.relative_path for m in top(1.0)]
    reranked = top(10.0)
    expected = [f"{'a' if i % 2 else 'b'}/{i:02d}.jpg" for i in exact[:10]]

    assert codes_only != expected, "the construction needs re-ranking: int8 codes alone misorder it"
    assert [m.relative_path for m in reranked] == expected
    for match, i in zip(reranked, exact[:10], strict=True):
        assert abs(match.score - cosine_to_score(float(vectors[i] @ query))) < 1e-5

    in_a = [m.relative_path for m in top(10.0, k=5, folder="a")]
    assert in_a == [p for p in expected + [f"a/{i:02d}.jpg" for i in exact[10:]] if p.startswith("a/")][:5]

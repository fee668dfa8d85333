"""The embedded store at scale: past IVF_MIN_VECTORS documents its kNN cache is an IVF index, which keeps
the recall of an exact search (about ten seconds of writes and training: an integration test)."""
from __future__ import annotations

import numpy as np
from stored_vectors import clustered, docs

from findimage.query import query_filters
from findimage.stores.embedded.store import EmbeddedStore
from findimage.stores.embedded.vector_index import IVF_MIN_VECTORS


def test_large_store_switches_to_ivf_and_keeps_recall(tmp_path):
    n = IVF_MIN_VECTORS + 2000
    vectors = clustered(n)
    store = EmbeddedStore(tmp_path)
    for start in range(0, n, 10_000):
        store.upsert(docs(vectors[start:start + 10_000], start=start))
    store.checkpoint()
    reopened = EmbeddedStore(tmp_path)
    queries = clustered(20, seed=9)
    hits = 0
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:10].tolist())
        found = {int(m.relative_path.split("/")[1][:-4]) for m in reopened.knn(q, k=10)}
        hits += len(exact & found)
    assert reopened.knn_index.kind == "ivf"
    assert hits / 200 >= 0.95
    # a folder filter on the ANN path still finds its own images
    reopened.upsert(docs(clustered(3, seed=5), prefix="tiny-folder"))
    assert len(reopened.knn(queries[0], k=10, filters=query_filters(folder="tiny-folder"))) == 3

#!/usr/bin/env python3
"""Elasticsearch store: bulk indexing throughput of precomputed vectors, kNN latency and recall@10.

    .venv/bin/python benchmarks/es_store.py --es http://127.0.0.1:9250 --sizes 10000,100000

Everything goes through the product's ElasticsearchStore (upsert = helpers.streaming_bulk, knn =
the top-level knn clause), on a throw-away index (alias) that is deleted at the end. Vectors are a
clustered mixture of unit vectors in 512 dims (a shared direction, 256 clusters, noise: mean pairwise
cosine ~0.43, ~0.76 within a cluster, like CLIP image embeddings; uniform noise would be unrealistic). Queries come from
the same distribution but are not in the index; recall@10 is against exact (brute-force) cosine
top-10. Prints a table and one JSON line per size.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from findimage.records import ImageDoc  # noqa: E402
from findimage.stores.elasticsearch.store import ElasticsearchStore  # noqa: E402

DIMS = 512


def mixture(count: int, seed: int, clusters: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre_rng = np.random.default_rng(1234)  # the same clusters for documents and queries
    shared = centre_rng.standard_normal(DIMS)
    shared /= np.linalg.norm(shared)
    centres = centre_rng.standard_normal((clusters, DIMS))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((count, DIMS), np.float32)
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        noise = rng.standard_normal((n, DIMS)) / np.sqrt(DIMS)
        v = 0.8 * shared + 0.7 * centres[rng.integers(0, clusters, n)] + 0.6 * noise
        out[start:start + n] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def docs(vectors: np.ndarray, start: int) -> list[ImageDoc]:
    now = time.time()
    return [ImageDoc(f"{start + i:024d}", f"{start + i}.jpg", f"bench/{start + i}.jpg", v, f"{start + i:064x}", 100_000,
                     1_700_000_000.0, 640, 480, now, "bench") for i, v in enumerate(vectors)]


def run(url: str, size: int, args) -> dict:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(url, request_timeout=120)
    store = ElasticsearchStore(client, url, f"findimage-bench-{os.getpid()}-{size}", args.index_options)
    vectors, queries = mixture(size, seed=1), mixture(args.queries, seed=2)
    truth = exact_top_k(vectors, queries, args.k)
    try:
        store.count()  # creates the index outside the timing
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, size, args.chunk):
            store.upsert(docs(vectors[start:start + args.chunk], start))
        store.checkpoint()  # refresh: everything written is searchable
        bulk_seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu
        assert store.count() == size
        for q in queries[:20]:  # warm-up: graphs and vectors into the page cache
            store.knn(q, args.k, args.num_candidates[0])
        segments = sum(len(s["segments"]) for shard in client.indices.segments(index=store.alias)["indices"].values()
                       for copies in shard["shards"].values() for s in copies)
        row = {"documents": size, "index_options": args.index_options, "bulk_seconds": round(bulk_seconds, 2),
               "docs_per_second": round(size / bulk_seconds), "client_cpu_seconds": round(client_cpu, 2),
               "chunk": args.chunk, "segments": segments, "k": args.k, "queries": len(queries), "knn": []}
        for num_candidates in args.num_candidates:
            for oversample in args.oversample:  # 1: int8 codes alone (the baseline), else exact re-ranking
                store.oversample = oversample
                ms, hits = [], 0
                for q, expected in zip(queries, truth, strict=True):
                    t = time.perf_counter()
                    found = store.knn(q, args.k, num_candidates)
                    ms.append((time.perf_counter() - t) * 1000)
                    hits += len({int(m.image_id) for m in found} & set(expected.tolist()))
                row["knn"].append({"num_candidates": num_candidates, "oversample": oversample,
                                   "p50_ms": round(statistics.median(ms), 2),
                                   "p95_ms": round(float(np.percentile(ms, 95)), 2),
                                   "recall_at_10": round(hits / (args.k * len(queries)), 4)})
        return row
    finally:
        store.drop()
        client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--es", default=os.environ.get("FINDIMAGE_TEST_ES_URL", "http://127.0.0.1:9250"))
    p.add_argument("--sizes", default="10000,100000", help="comma-separated index sizes")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--num-candidates", default="100", type=lambda v: [int(x) for x in v.split(",")],
                   help="comma-separated; each is measured on the same index")
    p.add_argument("--oversample", default="1,3", type=lambda v: [float(x) for x in v.split(",")],
                   help="comma-separated FINDIMAGE_ES_RESCORE_OVERSAMPLE values measured on the same index")
    p.add_argument("--chunk", type=int, default=1000, help="documents per upsert call (the indexer's batch)")
    p.add_argument("--index-options", default="int8_hnsw", choices=["int8_hnsw", "hnsw", "flat", "int8_flat"])
    args = p.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = run(args.es, size, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| documents | index_options | bulk docs/s | num_candidates | oversample | kNN p50 | kNN p95 | recall@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        for q in r["knn"]:
            print(f"| {r['documents']:,} | {r['index_options']} | {r['docs_per_second']:,} | {q['num_candidates']} | "
                  f"{q['oversample']:g} | "
                  f"{q['p50_ms']} ms | {q['p95_ms']} ms | {q['recall_at_10']:.3f} |")

if __name__ == "__main__":
    main()

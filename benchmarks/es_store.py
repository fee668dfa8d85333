#!/usr/bin/env python3
"""Elasticsearch store: `--full` bulk indexing of precomputed vectors, then kNN p50/p95 and recall@10 over a
grid of num_candidates x oversample, before and after a force-merge to one segment.

    .venv/bin/python -m benchmarks.es_store --es http://127.0.0.1:9281 --sizes 1000000 \
        --num-candidates 100,200,400,800 --oversample 3,5,10 --force-merge

Everything goes through the product's ElasticsearchStore: the index is built as `findimage index --full`
builds one (begin_rebuild: a new index without replicas or refreshes; upsert batches of `--chunk`;
finish_rebuild: settings restored, refreshed, alias swapped), with the HNSW graph of `--m` /
`--ef-construction` (FINDIMAGE_ES_HNSW_M / _EF_CONSTRUCTION) in the product's mapping; kNN is
`store.knn(q, 10, num_candidates)` with `store.oversample` set per cell (FINDIMAGE_ES_RESCORE_OVERSAMPLE).
Vectors are benchmarks.corpus.VectorMixture (clustered, anisotropic, like CLIP image embeddings; the
benchmarks.run `es` step uses the same), queries half image-like, half text-like, none in the index;
recall@10 is against exact cosine top-10. The grid's cells alternate per query, so every cell sees the same
caches and machine load. `--bulk-baseline` first builds the same index with the code before the bulk
changes (an mget per batch for texts to keep, vectors as 17-digit floats) for a same-run ratio.
The index is deleted at the end unless `--keep`; `--alias NAME` reuses a kept one (no build).
Prints a table; the figures go to benchmarks/results/es-store-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import save_result  # noqa: E402
from benchmarks.corpus import VectorMixture, exact_top_k  # noqa: E402
from benchmarks.run import _busy_seconds, _own_seconds  # noqa: E402
from benchmarks.workers import _es_cpu_seconds, _es_server_memory, _wait_for_merges, synthetic_docs  # noqa: E402
from findimage.config import ElasticsearchSettings, Settings  # noqa: E402
from findimage.search import FUSION_DEPTH  # noqa: E402
from findimage.stores.base import candidates_for  # noqa: E402
from findimage.stores.elasticsearch import store as store_module  # noqa: E402
from findimage.stores.elasticsearch.query import knn_body  # noqa: E402
from findimage.stores.elasticsearch.store import ElasticsearchStore  # noqa: E402


class Meter:
    """Wall time, this process's CPU, the node's CPU, and what the rest of the machine used meanwhile."""

    def __init__(self, client):
        self.client = client
        self.start = (time.perf_counter(), _own_seconds(), _es_cpu_seconds(client), _busy_seconds())

    def read(self, documents: int) -> dict:
        wall = time.perf_counter() - self.start[0]
        own = _own_seconds() - self.start[1]
        server = _es_cpu_seconds(self.client) - self.start[2]
        busy = _busy_seconds() - self.start[3]
        return {"seconds": round(wall, 2), "docs_per_second": round(documents / wall),
                "client_cpu_ms_per_doc": round(1000 * own / documents, 3),
                "server_cpu_ms_per_doc": round(1000 * server / documents, 3),
                "other_cpu_cores": round(max(0.0, busy - own - server) / wall, 2)}


def segments(client, index: str) -> int:
    found = client.indices.segments(index=index)["indices"]
    return sum(len(copy["segments"]) for shard in found.values() for copies in shard["shards"].values()
               for copy in copies)


def build(store: ElasticsearchStore, mixture: VectorMixture, size: int, chunk: int) -> dict:
    """A `--full` pass's writes: begin_rebuild, upserts, finish_rebuild (settings back, refresh, swap)."""
    store.open_for_writing()
    meter = Meter(store.client)
    store.begin_rebuild()
    for start, block in mixture.chunks(size):
        for i in range(0, len(block), chunk):
            store.upsert(synthetic_docs(start + i, block[i:i + chunk], "bench"))
    bulk_seconds = time.perf_counter() - meter.start[0]
    store.finish_rebuild()
    return {**meter.read(size), "bulk_seconds": round(bulk_seconds, 2)}


def graph(url: str, args) -> ElasticsearchSettings:
    """The store's settings with the grid's index options and HNSW graph, and no merge in finish_rebuild."""
    return ElasticsearchSettings(elasticsearch_url=url, es_index_options=args.index_options, es_hnsw_m=args.m,
                                 es_hnsw_ef_construction=args.ef_construction, es_force_merge_minutes=0)


def baseline_build(url: str, args, size: int, mixture: VectorMixture) -> dict:
    """The same build with the code before the bulk changes: every batch first looks its documents up for
    text to keep (also in a rebuild's empty index), and vectors travel as 17-digit floats."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(url, request_timeout=600)
    store = ElasticsearchStore(client, graph(url, args), alias=f"findimage-bench-{os.getpid()}-baseline")
    vector_json, upsert = store_module._vector_json, store.upsert
    store_module._vector_json = lambda v: np.asarray(v, dtype=float).tolist()  # type: ignore[assignment]

    def upsert_with_lookup(docs):
        store._texts_kept(docs)  # what every upsert did before: an mget per batch (here answered with nothing)
        upsert(docs)
    store.upsert = upsert_with_lookup  # type: ignore[method-assign]
    try:
        return build(store, mixture, size, args.chunk)
    finally:
        store_module._vector_json = vector_json
        store.drop()
        client.close()


def grid(store: ElasticsearchStore, product: ElasticsearchStore, queries: np.ndarray, truth: np.ndarray,
         args) -> list[dict]:
    """p50/p95 and recall@10 of each cell, and of the product's defaults as the Searcher asks for a top-5
    answer: FUSION_DEPTH results (the fusion's depth) with its num_candidates, the store's oversample and
    FINDIMAGE_ES_NUM_CANDIDATES, the first 10 compared."""
    depth = max(2 * Settings.top_k, FUSION_DEPTH)
    candidates = candidates_for(Settings.top_k, Settings.num_candidates)  # as the Searcher asks
    cells: list = [(nc, over) for nc in args.num_candidates for over in args.oversample] + ["product"]

    def search(cell, q: np.ndarray):
        if cell == "product":
            return product.knn(q, depth, candidates)[:args.k]
        store.oversample = cell[1]
        return store.knn(q, args.k, cell[0])

    for cell in cells:  # warm-up: graph, codes and float vectors into the page cache
        for q in queries[:10]:
            search(cell, q)
    ms: dict = {c: [] for c in cells}
    hits: dict = {c: [] for c in cells}
    for q, expected in zip(queries, truth, strict=True):
        wanted = set(expected.tolist())
        for cell in cells:
            t = time.perf_counter()
            found = search(cell, q)
            ms[cell].append((time.perf_counter() - t) * 1000)
            hits[cell].append(len({int(m.relative_path.rsplit("/", 1)[-1][:-4]) for m in found} & wanted) / args.k)
    half = len(queries) // 2
    asked = knn_body(queries[0], depth, candidates, [], product.indices.settings)["knn"]
    rows = []
    for cell in cells:
        what = {"num_candidates": cell[0], "oversample": cell[1]} if cell != "product" else {
            "product_defaults": True, "num_candidates": asked["num_candidates"], "oversample": product.oversample,
            "k_asked": asked["k"]}
        rows.append({**what, "p50_ms": round(statistics.median(ms[cell]), 2),
                     "p95_ms": round(float(np.percentile(ms[cell], 95)), 2),
                     "recall_at_10": round(float(np.mean(hits[cell])), 4),
                     "recall_image": round(float(np.mean(hits[cell][:half])), 4),
                     "recall_text": round(float(np.mean(hits[cell][half:])), 4)})
    return rows


def run(url: str, size: int, args) -> dict:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(url, request_timeout=600)
    mixture = VectorMixture(args.seed)
    row: dict = {"documents": size, "index_options": args.index_options, "m": args.m,
                 "ef_construction": args.ef_construction, "chunk": args.chunk, "k": args.k, "queries": args.queries}
    if args.bulk_baseline and not args.alias:
        row["bulk_before"] = baseline_build(url, args, size, mixture)
        print(f"  bulk before: {json.dumps(row['bulk_before'])}", flush=True)
    alias = args.alias or f"findimage-bench-{os.getpid()}-{size}"
    # No merge inside finish_rebuild: the grid is measured on the index as bulk-built, then after the
    # same force-merge (to one segment) that FINDIMAGE_ES_FORCE_MERGE_MINUTES makes a --full pass run.
    store = ElasticsearchStore(client, dataclasses.replace(graph(url, args), es_num_candidates=1), alias=alias)
    product = ElasticsearchStore(client, ElasticsearchSettings(elasticsearch_url=url), alias=alias)  # the defaults
    queries = mixture.queries(args.queries)
    truth = exact_top_k(mixture, size, queries, args.k)
    try:
        if args.alias:
            row["reused_index"] = store.indices.concrete_indices()
        else:
            row["bulk"] = build(store, mixture, size, args.chunk)
            print(f"  bulk: {json.dumps(row['bulk'])}", flush=True)
            if "bulk_before" in row:
                row["bulk_ratio"] = round(row["bulk"]["docs_per_second"] / row["bulk_before"]["docs_per_second"], 2)
            row["segments_after_build"] = segments(client, alias)
            row["merge_wait_seconds"] = round(_wait_for_merges(client, alias, limit=args.merge_wait), 1)
        assert store.count() == size, f"the index holds {store.count()} documents, not {size}"
        row["segments"] = segments(client, alias)
        row["index_disk_mb"] = round(client.indices.stats(index=alias, metric="store")["_all"]["total"]["store"]
                                     ["size_in_bytes"] / 2**20)
        row["knn"] = grid(store, product, queries, truth, args)
        row["server"] = _es_server_memory(client)
        if args.force_merge:
            started = time.perf_counter()
            client.options(request_timeout=args.force_merge_timeout).indices.forcemerge(
                index=alias, max_num_segments=1, wait_for_completion=True)
            row["force_merge_seconds"] = round(time.perf_counter() - started, 1)
            row["segments_merged"] = segments(client, alias)
            print(f"  force-merge: {row['force_merge_seconds']} s -> {row['segments_merged']} segment(s)", flush=True)
            row["knn_merged"] = grid(store, product, queries, truth, args)
        return row
    finally:
        if args.keep:
            print(f"  kept the index: --alias {alias}", flush=True)
        else:
            store.drop()
        client.close()


def table(rows: list[dict]) -> str:
    out = ["| documents | m | ef_construction | merged | segments | num_candidates | oversample | kNN p50 | kNN p95 "
           "| recall@10 | image-like | text-like |", "|" + " --- |" * 12]
    for r in rows:
        for merged, key, segs in (("no", "knn", r["segments"]), ("yes", "knn_merged", r.get("segments_merged"))):
            for q in r.get(key, []):
                cell = (f"{q['num_candidates']} (defaults: k {q['k_asked']})" if q.get("product_defaults")
                        else q["num_candidates"])
                out.append(f"| {r['documents']:,} | {r['m']} | {r['ef_construction']} | {merged} | {segs} | "
                           f"{cell} | {q['oversample']:g} | {q['p50_ms']} ms | {q['p95_ms']} ms | "
                           f"{q['recall_at_10']:.3f} | {q['recall_image']:.3f} | {q['recall_text']:.3f} |")
    return "\n".join(out)


def main() -> None:
    def numbers(kind):
        return lambda v: [kind(x) for x in v.split(",")]

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--es", default=os.environ.get("FINDIMAGE_TEST_ES_URL", "http://127.0.0.1:9250"))
    p.add_argument("--sizes", default="100000", type=numbers(int), help="comma-separated index sizes")
    p.add_argument("--queries", type=int, default=200, help="half image-like, half text-like")
    p.add_argument("--seed", type=int, default=3, help="the vector mixture's (benchmarks.run's es step uses 3)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--num-candidates", default="100,200,400", type=numbers(int), help="comma-separated")
    p.add_argument("--oversample", default="1,3", type=numbers(float),
                   help="comma-separated FINDIMAGE_ES_RESCORE_OVERSAMPLE values (1: the int8 codes alone)")
    p.add_argument("--chunk", type=int, default=1000, help="documents per upsert call (the indexer's batch)")
    p.add_argument("--index-options", default="int8_hnsw", choices=["int8_hnsw", "hnsw", "flat", "int8_flat"])
    p.add_argument("--m", type=int, default=16, help="HNSW links per node (FINDIMAGE_ES_HNSW_M)")
    p.add_argument("--ef-construction", type=int, default=100,
                   help="HNSW candidates while linking (FINDIMAGE_ES_HNSW_EF_CONSTRUCTION)")
    p.add_argument("--force-merge", action="store_true", help="measure the grid again after merging to 1 segment")
    p.add_argument("--force-merge-timeout", type=float, default=3600.0)
    p.add_argument("--merge-wait", type=float, default=600.0, help="longest wait for merges after the build (s)")
    p.add_argument("--bulk-baseline", action="store_true", help="first build with the code before (for a ratio)")
    p.add_argument("--keep", action="store_true", help="keep the index (its alias is printed)")
    p.add_argument("--alias", help="measure this kept index instead of building one (one size)")
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        row = run(args.es, size, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print(table(rows))
    for r in rows:
        if "bulk" in r:
            before = f", before {r['bulk_before']['docs_per_second']:,} docs/s (x{r['bulk_ratio']})" \
                if "bulk_before" in r else ""
            print(f"bulk {r['documents']:,}: {r['bulk']['docs_per_second']:,} docs/s{before}; segments "
                  f"{r['segments_after_build']} after the build, {r['segments']} after {r['merge_wait_seconds']} s "
                  f"of merges" + (f", force-merge {r['force_merge_seconds']} s" if "force_merge_seconds" in r else ""))
    out = save_result("es-store", {"command": " ".join(sys.argv), "rows": rows})
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

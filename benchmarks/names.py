#!/usr/bin/env python3
"""Names, dates and text in images at 100k documents: text query latency with fusion (names; names and
image text) vs CLIP alone, and the upgrade of an index made before names and dates were kept.

    .venv/bin/python -m benchmarks.names [--docs 100000] [--queries 1000] [--es http://127.0.0.1:9250]
        [--baseline DIR]

Writes an archive of tiny EXIF-dated JPEGs in folders with everyday names (the files' content does not
matter here: the vectors are a clustered CLIP-like mixture, benchmarks/corpus.py), stores them as the
previous version did (no path words, no dates), then times through product code: opening the store (the
schema migration fills the FTS5 table), one ordinary `IndexPass` (headers only, nothing embedded), and
`Searcher.by_text` with CLIP alone (FINDIMAGE_HYBRID=off), fused with names (FINDIMAGE_OCR=off) and fused
with names and the text read in images (one document in ten holds lines of text, as an archive of photos
with some screenshots would), alternating query by query (the text model is left out: the same for all);
with --es, the same documents and texts copied into an Elasticsearch index (deleted at the end) and timed
the same way once its merges are done. With --baseline, a checkout of other code (`git worktree add DIR
<commit>`) answers the same queries on the same store in a child process, its query alternating with each of
this code's, so both are measured on the same machine at the same time (for a machine others keep busy).
Writes benchmarks/results/names-<time>.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.corpus import VectorMixture  # noqa: E402
from findimage.backends import open_store  # noqa: E402
from findimage.config import Settings, load_settings  # noqa: E402
from findimage.records import ImageDoc, ReadText, TextLine, image_id_for  # noqa: E402
from findimage.search import Searcher  # noqa: E402
from findimage.stores.base import META_IMAGE_MODEL  # noqa: E402
from findimage.stores.embedded.store import EmbeddedStore  # noqa: E402
from indexer.index_pass import IndexPass, PassRequest  # noqa: E402

EVENTS = ["Sommerfest", "Weihnachtsfeier", "Kundenbesuch Bosch", "Messe Hannover", "Betriebsausflug",
          "Produktfotos", "Team Offsite", "Jubiläum", "Workshop Berlin", "Baustelle Nord"]
NAMED_QUERIES = ["Sommerfest", "bosch", "messe hannover 2023", "jubiläum", "team offsite crowd"]
OTHER_QUERIES = ["a red car at night", "snow covered mountain", "people laughing at a table",
                 "sunset over the sea", "a dog on a sofa"]
TEXT_QUERIES = ["disk quota exceeded", "invoice total", "Umsatzprognose 2025", "meeting room booked"]
LINES = ["ERROR: disk quota exceeded on volume {n}", "Invoice {n} total 1,234.00 EUR", "Umsatzprognose 2025 Region {n}",
         "Meeting room {n} booked until 14:00", "Build {n} passed: 312 tests", "Welcome to the team, {n}!"]
MODEL = "bench-model"


class Fixed:
    """Stands in for both models: the text model costs the same with and without fusion."""

    model_id = MODEL

    def __init__(self, vectors: np.ndarray):
        self.vectors, self.calls = vectors, 0

    def embed_texts(self, texts):
        self.calls += 1
        return self.vectors[self.calls % len(self.vectors)][None, :]


def jpeg(year: int) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = f"{year}:06:14 18:03:00"
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (year % 255, 90, 160)).save(out, "JPEG", exif=exif)
    return out.getvalue()


def make_archive(root: Path, count: int) -> list[str]:
    contents = {year: jpeg(year) for year in range(2015, 2025)}
    paths = []
    for i in range(count):
        folder, year = i // 100, 2015 + (i // 100) % 10
        path = f"{year}-{folder % 12 + 1:02d} {EVENTS[folder % len(EVENTS)]} {folder}/IMG_{i:06d}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(contents[year])
        paths.append(path)
    return paths


def old_index(data: Path, root: Path, paths: list[str], mixture: VectorMixture) -> None:
    """The documents as the previous version stored them: vectors, no path words, no dates."""
    store = EmbeddedStore(data)
    for start, vectors in mixture.chunks(len(paths), 5000):
        docs = []
        for offset, vector in enumerate(vectors):
            path = paths[start + offset]
            stat = (root / path).stat()
            docs.append(ImageDoc(image_id_for(path), path.rsplit("/", 1)[1], path, vector, f"sha{start + offset}",
                                 stat.st_size, stat.st_mtime, 16, 12, time.time(), MODEL))
        store.upsert(docs)
    store.set_meta(META_IMAGE_MODEL, MODEL)
    store.checkpoint()
    store.close()
    db = sqlite3.connect(data / "findimage.sqlite")
    db.executescript("DROP INDEX images_taken; DROP TABLE names; ALTER TABLE images DROP COLUMN taken; "
                     "ALTER TABLE images DROP COLUMN taken_source; DELETE FROM meta WHERE key='schema_version';")
    db.close()


def timed_queries(searcher: Searcher, queries: list[str], rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        searcher.by_text(queries[i % len(queries)], k=5)
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentiles(times: list[float]) -> str:
    ordered = sorted(times)
    return f"p50 {statistics.median(ordered):.2f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.2f} ms"


MODES = {"CLIP alone": {"FINDIMAGE_HYBRID": "off"}, "names": {"FINDIMAGE_HYBRID": "on", "FINDIMAGE_OCR": "off"},
         "names and text": {"FINDIMAGE_HYBRID": "on", "FINDIMAGE_OCR": "on"}}


# The baseline's side of --baseline: Searcher.by_text of the code on its sys.path, timed in its process, on
# the queries the parent sends (one JSON line each: store settings, mode, query, which query vector).
BASELINE_CHILD = r"""
import json, sys, time
import numpy as np
from findimage.backends import open_store
from findimage.config import load_settings
from findimage.search import Searcher

class Given:
    model_id = sys.argv[2]
    vector = None
    def embed_texts(self, texts):
        return self.vector[None, :]

vectors, given, stores, searchers = np.load(sys.argv[1]), Given(), {}, {}
for line in sys.stdin:
    ask = json.loads(line)
    if ask["store"] not in stores:
        stores[ask["store"]] = open_store(load_settings(ask["env"], env_file=None))
    key = (ask["store"], ask["mode"])
    if key not in searchers:
        searchers[key] = Searcher(load_settings({**ask["env"], **ask["changes"]}, env_file=None),
                                  store=stores[ask["store"]], text_embedder=given, image_embedder=given)
    given.vector = vectors[ask["vector"]]
    started = time.perf_counter()
    searchers[key].by_text(ask["query"], k=5)
    print(json.dumps({"ms": (time.perf_counter() - started) * 1000}), flush=True)
"""


class Baseline:
    """Other code (a checkout in `folder`) answering queries in a child process: see BASELINE_CHILD."""

    def __init__(self, folder: Path, vectors: np.ndarray, work: Path):
        np.save(work / "queries.npy", vectors)
        self.child = subprocess.Popen([sys.executable, "-c", BASELINE_CHILD, str(work / "queries.npy"), MODEL],
                                      cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)},
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, label: str, env: dict, mode: str, query: str, vector: int) -> float:
        ask = {"store": label, "env": env, "mode": mode, "changes": MODES[mode], "query": query, "vector": vector}
        self.child.stdin.write(json.dumps(ask) + "\n")
        self.child.stdin.flush()
        answer = self.child.stdout.readline()
        if not answer:
            raise RuntimeError(f"the baseline code stopped (exit {self.child.wait()})")
        return json.loads(answer)["ms"]

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(timeout=60)


def compare(label: str, store, env: dict, text: Fixed, args, baseline: Baseline | None = None) -> dict:
    """Text query latency through Searcher.by_text, CLIP alone and fused, alternating on one store; the
    figures by kind of query and mode (with a baseline, its figures too, as "baseline <mode>")."""
    searchers = {mode: Searcher(load_settings({**env, **changes}, env_file=None), store=store,
                                text_embedder=text, image_embedder=text) for mode, changes in MODES.items()}
    for searcher in searchers.values():
        timed_queries(searcher, NAMED_QUERIES, 20)  # warm: kNN cache loaded, pages cached
    if baseline is not None:
        for mode in MODES:
            for i in range(20):
                baseline.time(label, env, mode, NAMED_QUERIES[i % len(NAMED_QUERIES)], i)
    figures: dict[str, dict] = {}
    for kind, queries in (("queries matching names", NAMED_QUERIES), ("queries matching no name", OTHER_QUERIES),
                          ("queries matching image text", TEXT_QUERIES)):
        results: dict[str, list[float]] = {mode: [] for mode in searchers}
        if baseline is not None:
            results.update({f"baseline {mode}": [] for mode in searchers})
        # Alternate query by query, so every mode sees the same machine: in blocks of 50, a burst of other
        # work on the shared cores landed on one mode (the Elasticsearch delta of one code: +3.9 and +10.8 ms).
        for i in range(args.queries // 2):
            for mode, searcher in searchers.items():
                query = queries[i % len(queries)]
                results[mode] += timed_queries(searcher, [query], 1)
                if baseline is not None:  # the same query and query vector
                    vector = text.calls % len(text.vectors)
                    results[f"baseline {mode}"].append(baseline.time(label, env, mode, query, vector))
        figures[kind] = {}
        for code in ("", "baseline ") if baseline is not None else ("",):
            alone = statistics.median(results[f"{code}CLIP alone"])
            alone_p95 = sorted(results[f"{code}CLIP alone"])[int(0.95 * (args.queries // 2 - 1))]
            mine = {mode: times for mode, times in results.items() if mode.startswith(code) and
                    (code or not mode.startswith("baseline "))}
            shown = "; ".join(f"{mode} {percentiles(times)} ({statistics.median(times) - alone:+.2f} ms at p50)"
                              for mode, times in mine.items())
            print(f"{label}, {kind} (k=5, {store.count():,} docs, search without the text model): {shown}")
            figures[kind].update({mode: {"p50_ms": round(statistics.median(times), 2),
                                         "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
                                         "p50_added_ms": round(statistics.median(times) - alone, 2),
                                         "p95_added_ms": round(sorted(times)[int(0.95 * (len(times) - 1))] -
                                                               alone_p95, 2)}
                                  for mode, times in mine.items()})
    return figures


def give_texts(store, paths: list[str], every: int = 10) -> dict[str, ReadText]:
    """Lines of text for one document in `every`, as the indexer's text stage stores them."""
    texts = {}
    for i in range(0, len(paths), every):
        line = LINES[(i // every) % len(LINES)].format(n=i)
        texts[f"sha{i}"] = ReadText("read", (TextLine(line, ((0, 0), (400, 0), (400, 30), (0, 30)), 0.97),))
    items = [(image_id_for(paths[i]), f"sha{i}", texts[f"sha{i}"]) for i in range(0, len(paths), every)]
    for start in range(0, len(items), 1000):
        store.set_texts(items[start:start + 1000])
    store.checkpoint()
    return texts


def copy_documents(source: EmbeddedStore, target, texts: dict[str, ReadText], chunk: int = 1000) -> None:
    """Every document of the embedded store, names, dates and texts included, into another store."""
    ids = sorted(state.image_id for state in source.file_states().values())
    for start in range(0, len(ids), chunk):
        docs = [source.get(i) for i in ids[start:start + chunk]]
        target.upsert(docs)
        target.set_texts([(d.image_id, d.sha256, texts[d.sha256]) for d in docs if d and d.sha256 in texts])
    target.set_meta(META_IMAGE_MODEL, MODEL)
    target.checkpoint()


def settled(client, index: str, quiet_s: int = 5, at_most_s: int = 900) -> float:
    """Seconds waited until Elasticsearch has merged no segment of `index` for `quiet_s` seconds in a row.
    A bulk load leaves merges running for a minute or more (each rebuilding HNSW graphs on this machine's
    cores): timed meanwhile, every mode's tail is the merge's, not the query's."""
    started, quiet = time.perf_counter(), 0
    while quiet < quiet_s and time.perf_counter() - started < at_most_s:
        merges = client.indices.stats(index=index, metric="merge")["_all"]["total"]["merges"]
        quiet = quiet + 1 if merges["current"] == 0 else 0
        time.sleep(1)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--es", metavar="URL", help="also measure the Elasticsearch store on this server")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="a checkout of other code to measure alongside, its queries alternating with these")
    args = parser.parse_args()
    result: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(), "docs": args.docs,
                    "queries": args.queries}
    work = Path(tempfile.mkdtemp(prefix="findimage-names-bench-"))
    try:
        root, data = work / "archive", work / "data"
        started = time.perf_counter()
        paths = make_archive(root, args.docs)
        mixture = VectorMixture()
        old_index(data, root, paths, mixture)
        print(f"setup: {args.docs:,} files and an index of the previous version in "
              f"{time.perf_counter() - started:.0f} s")

        started = time.perf_counter()
        store = EmbeddedStore(data)
        migrated = time.perf_counter() - started
        started = time.perf_counter()
        settings = Settings(archive=root, data_dir=data, ocr=False)
        summary = IndexPass(store, Fixed(np.zeros((1, 512), np.float32)), settings, PassRequest(progress=False)).run()
        upgraded = time.perf_counter() - started
        print(f"upgrade: schema migration (path words of {args.docs:,} documents) {migrated:.2f} s; ordinary pass "
              f"{upgraded:.1f} s: {summary.line()}")
        assert summary.embedded == 0 and summary.upgraded == args.docs

        started = time.perf_counter()
        texts = give_texts(store, paths)
        print(f"texts: {len(texts):,} documents given a line of text in {time.perf_counter() - started:.1f} s")
        text = Fixed(mixture.rows(0, 64, stream=2))
        baseline = Baseline(args.baseline.resolve(), text.vectors, work) if args.baseline else None
        if args.baseline:
            result["baseline"] = subprocess.run(["git", "-C", str(args.baseline), "log", "-1", "--format=%h %s"],
                                                capture_output=True, text=True).stdout.strip() or str(args.baseline)
        env = {"FINDIMAGE_ARCHIVE": str(root), "FINDIMAGE_DATA_DIR": str(data)}
        result["embedded"] = compare("embedded", store, env, text, args, baseline)
        if args.es:
            env = {**env, "ELASTICSEARCH_URL": args.es, "FINDIMAGE_INDEX": f"findimage-names-bench-{os.getpid()}"}
            es = open_store(load_settings(env, env_file=None))
            try:
                started = time.perf_counter()
                copy_documents(store, es, texts)
                written = time.perf_counter() - started
                waited = settled(es.client, es.alias)
                segments = len(es.client.cat.segments(index=es.alias, format="json").body)
                print(f"elasticsearch: {es.count():,} documents with names and dates written in {written:.0f} s, "
                      f"merges done {waited:.0f} s later ({segments} segments)")
                result["elasticsearch_segments"] = segments
                result["elasticsearch_settled_s"] = round(waited)
                result["elasticsearch"] = compare("elasticsearch", es, env, text, args, baseline)
            finally:
                try:
                    es.drop()
                except Exception as exc:  # the figures are printed already; say what is left behind
                    print(f"could not delete the benchmark index: {exc}", file=sys.stderr)
        store.close()
        if baseline is not None:
            baseline.close()
        out = ROOT / "benchmarks" / "results" / f"names-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

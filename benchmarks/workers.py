"""Measurements that run in their own process (clean memory figures, one model setup each).

    python -m benchmarks.workers <name> [json arguments]

Each prints one JSON object on its last stdout line. Settings come from the FINDIMAGE_* environment
the orchestrator (benchmarks/run.py) passes, exactly as the product reads them.
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU of this process's children that ended (the text reader children, once a pass has stopped them)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ChildrenPeak:
    """The largest peak RSS of this process's children (the text reader children) while it runs, sampled
    from /proc five times a second (a child's own peak, VmHWM, so short spikes count too)."""

    def __init__(self):
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.2):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                                  if ":" in line)
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                    self.peak_mb = max(self.peak_mb, int(fields["VmHWM"].split()[0]) / 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_mb, 1)


def memory() -> dict:
    """Current and peak resident set size of this process, in MB."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": round(values["VmRSS"], 1), "peak_rss_mb": round(values["VmHWM"], 1)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _settings():
    from findimage.config import load_settings

    return load_settings(env_file=None)


# ---- indexing --------------------------------------------------------------------------------
def seed_loop(args: dict) -> dict:
    """The seed document's ingest loop, as written there (model load and one warm-up call untimed)."""
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    img_model = SentenceTransformer(args["model"])
    load_seconds = time.perf_counter() - started
    img_model.encode(Image.new("RGB", (640, 480), (90, 120, 150)))  # warm-up, as for the candidates
    PATH_TO_IMAGES = os.path.join(args["folder"], "**", "*.jpg")
    lst = []
    started, cpu = time.perf_counter(), cpu_seconds()
    for filename in glob.glob(PATH_TO_IMAGES, recursive=True):
        doc = {}
        image = Image.open(filename)
        embedding = img_model.encode(image)
        doc['image_name'] = os.path.basename(filename)
        doc['image_embedding'] = embedding.tolist()
        lst.append(doc)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    np.savez(args["vectors"], **{d["image_name"]: np.asarray(d["image_embedding"], np.float32) for d in lst})
    return {"images": len(lst), "seconds": seconds, "images_per_second": len(lst) / seconds,
            "cpu_ms_per_image": 1000 * cpu / len(lst), "load_seconds": load_seconds, **memory()}


def index_pass(args: dict) -> dict:
    """A product indexing pass (`findimage index`) over a fresh archive, with the model loaded first."""
    from PIL import Image

    from findimage import backends
    from findimage.records import image_id_for
    from findimage.stores.embedded.store import EmbeddedStore
    from indexer.run import index_once

    settings = _settings()
    embedder = backends.image_embedder(settings)
    started = time.perf_counter()
    embedder.load()
    load_seconds = time.perf_counter() - started
    embedder.embed_images([Image.new("RGB", (640, 480), (90, 120, 150))])  # warm-up, as for the seed loop
    own, readers, children = cpu_seconds(), children_cpu_seconds(), ChildrenPeak()
    summary = index_once(settings, progress=False)  # its reader children have ended when it returns
    own, readers = cpu_seconds() - own, children_cpu_seconds() - readers
    images = max(1, summary.embedded)
    result = {"images": summary.embedded, "seconds": summary.seconds,
              "images_per_second": summary.images_per_second, "failed": summary.failed,
              "text_read": summary.text_read, "cpu_seconds": own + readers, "indexer_cpu_seconds": own,
              "reader_cpu_seconds": readers, "cpu_ms_per_image": 1000 * (own + readers) / images,
              "indexer_cpu_ms_per_image": 1000 * own / images, "reader_cpu_ms_per_image": 1000 * readers / images,
              "load_seconds": load_seconds, "quantized": embedder.quantized,
              "fidelity": embedder.fidelity.__dict__ if embedder.fidelity else None,
              "readers_peak_rss_mb": children.stop(), **memory()}
    if args.get("vectors"):
        store = EmbeddedStore(settings.data_dir)
        names = sorted(p.name for p in Path(settings.archive).glob("*.jpg"))
        np.savez(args["vectors"], **{n: store.get(image_id_for(n)).image_embedding for n in names})
        store.close()
    return result


def reader_child(args: dict) -> dict:
    """A text reader child's CPU per photo: the first `photos` files in `folder` (12-MP phone JPEGs without
    text, as the indexing benchmark indexes them) handed over as the indexer hands them, with the small copy
    of the pixels decoded for the embedding (that decode is the embedding's, not counted). The child is
    started and warmed on the first file; its CPU is read from /proc, the handing over included."""
    from findimage.imaging import prepare_bytes
    from findimage.models.reader_process import ArchivePicture, ReaderPool, ReadingLimits
    from findimage.models.text_reader import probe_copy

    folder = Path(args["folder"])
    pictures = []
    for path in sorted(folder.glob("*.jpg"))[:args["photos"]]:
        decoded = prepare_bytes(path.read_bytes(), 224)  # as the indexer decodes for CLIP's 224-px input
        stat = path.stat()
        pictures.append(ArchivePicture(str(folder), path.name, stat.st_size, stat.st_mtime,
                                       probe_copy(decoded.image), (decoded.width, decoded.height)))
    pool = ReaderPool(ReadingLimits(threads=1, timeout_seconds=120, max_pixels=200_000_000, budget=1 << 30,
                                    memory=3 << 30, readers=1))

    def child_cpu() -> float:
        (reader,) = pool._readers
        fields = Path(f"/proc/{reader._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    try:
        pool.submit(pictures[0]).result()
        cpu, parent = child_cpu(), cpu_seconds()
        read = [future.result() for future in [pool.submit(p) for p in pictures]]
        cpu, parent = child_cpu() - cpu, cpu_seconds() - parent
    finally:
        pool.close()
    return {"photos": len(pictures), "child_cpu_ms_per_photo": round(1000 * cpu / len(pictures), 1),
            "parent_cpu_ms_per_photo": round(1000 * parent / len(pictures), 1),
            "with_lines": sum(bool(r.lines) for r in read), "not_read": sum(r.state != "read" for r in read)}


def archive_pass(args: dict) -> dict:
    """One `findimage index` pass over an already indexed archive (the model is loaded only if needed)."""
    from findimage import backends
    from indexer.run import index_once

    settings = _settings()
    embedder = backends.image_embedder(settings)
    if args.get("load_first"):
        embedder.load()
    calls = []
    original = embedder.embed_images

    def counting(images):
        calls.append(len(images))
        return original(images)

    embedder.embed_images = counting
    cpu, children = cpu_seconds() + children_cpu_seconds(), ChildrenPeak()
    summary = index_once(settings, progress=False)
    cpu = cpu_seconds() + children_cpu_seconds() - cpu
    return {"seconds": summary.seconds, "embedded": summary.embedded, "embed_calls": len(calls),
            "images_through_model": sum(calls), "unchanged": summary.unchanged, "updated": summary.updated,
            "added": summary.added, "failed": summary.failed, "model_loaded": embedder._model is not None,
            "text_read": summary.text_read, "cpu_seconds": cpu,
            "cpu_ms_per_image": 1000 * cpu / max(1, summary.text_read + summary.embedded),
            "readers_peak_rss_mb": children.stop(), **memory()}


# ---- queries ---------------------------------------------------------------------------------
TEXT_QUERIES = [
    "ein schneebedeckter Berg", "a snow covered mountain", "Rosen", "red roses in a vase",
    "team photo at the summer party",
    "whiteboard with a sketch of the architecture", "un chat qui dort sur un canapé", "perro corriendo en la playa",
    "sunset over the harbour", "the new office kitchen", "Weihnachtsfeier 2023", "people laughing around a table",
    "a bicycle leaning against a wall", "rainy street at night with neon lights", "Kinder spielen im Park",
    "close-up of a circuit board", "conference stage with a speaker", "a cake with candles", "Hund im Schnee",
    "aerial view of a city", "screenshot of a dashboard", "forest path in autumn", "トンネルの中の電車",
    "chien qui saute", "old black and white family picture", "product shot of a blue mug on white background",
    "the parking lot from above", "Sonnenuntergang am Meer", "a crowded train station", "hands typing on a laptop",
    "two people shaking hands", "mountain lake with reflections", "a pile of cardboard boxes", "firework",
    "Eiffel tower", "Katze", "server room with blinking lights", "a map on a wall", "green leaves with water drops",
    "a dog wearing sunglasses on a skateboard in front of a graffiti wall",
]


def format_matches(result) -> str:
    """What a user gets: the CLI's ranked lines (the bot formats the same matches into blocks)."""
    lines = [f"{rank:>3}  {m.score:.4f}  {m.relative_path}" for rank, m in enumerate(result.matches, 1)]
    return "\n".join(lines) + json.dumps([m.as_json() for m in result.matches])


def queries(args: dict) -> dict:
    """Text and image queries end to end through the product's Searcher, then the process's memory."""
    from findimage.search import Searcher

    settings = _settings()
    started = time.perf_counter()
    searcher = Searcher(settings)
    searcher.warm_up()
    warm_seconds = time.perf_counter() - started
    searcher.check_model()
    loaded = memory()

    for text in TEXT_QUERIES[:3]:  # first calls build caches (tokenizer, kNN snapshot): not what users wait for
        format_matches(searcher.by_text(text))
    text_ms = []
    for _ in range(args.get("rounds", 2)):
        for text in TEXT_QUERIES:
            t = time.perf_counter()
            format_matches(searcher.by_text(text))
            text_ms.append((time.perf_counter() - t) * 1000)

    image_ms, decode_ms = [], []
    photos = [Path(p).read_bytes() for p in args["images"]]
    format_matches(searcher.by_image_bytes(photos[-1]))
    for data in photos[:-1]:
        t = time.perf_counter()
        format_matches(searcher.by_image_bytes(data))
        image_ms.append((time.perf_counter() - t) * 1000)

    from findimage.imaging import prepare_bytes

    for data in photos[:5]:
        t = time.perf_counter()
        prepare_bytes(data)
        decode_ms.append((time.perf_counter() - t) * 1000)
    knn_ms = []
    vector = searcher.text_embedder.embed_texts(["a snow covered mountain"])[0]
    for _ in range(50):
        t = time.perf_counter()
        searcher.store.knn(vector, settings.top_k, settings.num_candidates)
        knn_ms.append((time.perf_counter() - t) * 1000)
    return {
        "documents": searcher.store.count(), "warm_up_seconds": warm_seconds,
        "text_p50_ms": statistics.median(text_ms), "text_p95_ms": percentile(text_ms, 95), "text_queries": len(text_ms),
        "image_p50_ms": statistics.median(image_ms), "image_queries": len(image_ms),
        "image_decode_p50_ms": statistics.median(decode_ms), "knn_p50_ms": statistics.median(knn_ms),
        "image_quantized": getattr(searcher.image_embedder, "quantized", False),
        "models_loaded": loaded, **memory(),
    }


# ---- stores of synthetic vectors -------------------------------------------------------------
def synthetic_docs(start: int, vectors: np.ndarray, model_id: str, files=None) -> list:
    """Documents for `vectors`: for archive files if given (dated as a pass dates them, from the file's
    modification time: a pass over them upgrades nothing), else for made-up paths (folders of 1,000)."""
    from findimage.dates import taken_of
    from findimage.records import ImageDoc, image_id_for

    now = time.time()
    docs = []
    for i, vector in enumerate(vectors, start):
        taken: tuple[str | None, str] = (None, "")
        if files is not None:
            f = files[i]
            path, size, mtime = f.relative_path, f.size, f.mtime
            taken = taken_of(None, mtime)
        else:
            path, size, mtime = f"s{i // 1000:04d}/{i:07d}.jpg", 2_500_000, now
        docs.append(ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector, f"bench-{i}", size, mtime,
                             4032, 3024, now, model_id, taken[0], taken[1]))
    return docs


def build_store(args: dict) -> dict:
    """An embedded store of `count` synthetic vectors (or one per archive file), as a first pass writes it;
    with `texts`, every document's text read too (none found), as a pass with reading on leaves it."""
    from benchmarks.corpus import VectorMixture
    from findimage.models.clip import model_fingerprint
    from findimage.records import ReadText
    from findimage.stores.base import META_IMAGE_MODEL
    from findimage.stores.embedded.store import EmbeddedStore
    from indexer.scan import scan_archive

    files = None
    if args.get("archive"):
        files = sorted(scan_archive(args["archive"]).files.values(), key=lambda f: f.relative_path)
    count = len(files) if files is not None else args["count"]
    model_id = model_fingerprint(args["model"])
    store = EmbeddedStore(args["data_dir"])
    started = time.perf_counter()
    for start, block in VectorMixture(args["seed"]).chunks(count):
        docs = synthetic_docs(start, block, model_id, files)
        store.upsert(docs)
        if args.get("texts"):
            for i in range(0, len(docs), 1000):
                store.set_texts([(d.image_id, d.sha256, ReadText("read")) for d in docs[i:i + 1000]])
    store.set_meta(META_IMAGE_MODEL, model_id)
    upserted = time.perf_counter() - started
    store.checkpoint()
    result = {"documents": store.count(), "seconds": time.perf_counter() - started, "upsert_seconds": upserted,
              **memory()}
    store.close()
    return result


def elasticsearch(args: dict) -> dict:
    """A `--full`-style build (the rebuild's bulk settings, restored before the alias swap) and kNN through
    the product's Elasticsearch store, on a throw-away index; kNN with the configured exact re-ranking and,
    on the same index, with the int8 codes alone (oversample 1) as the baseline."""
    from benchmarks.corpus import VectorMixture, exact_top_k
    from findimage.backends import open_store
    from findimage.models.clip import model_fingerprint
    from findimage.stores.elasticsearch.query import knn_body

    settings = _settings()
    store = open_store(settings)
    mixture, count = VectorMixture(args["seed"]), args["count"]
    model_id = model_fingerprint(args["model"])
    server = _es_server_memory(store.client)
    try:
        batch = args.get("batch", 1000)  # documents per upsert call (the indexer sends its batch size)
        store.open_for_writing()
        started, client_cpu, server_cpu = time.perf_counter(), cpu_seconds(), _es_cpu_seconds(store.client)
        store.begin_rebuild()
        for start, block in mixture.chunks(count):
            for i in range(0, len(block), batch):
                store.upsert(synthetic_docs(start + i, block[i:i + batch], model_id))
        bulk_seconds = time.perf_counter() - started
        store.finish_rebuild()  # settings restored, refreshed, alias swapped: what a --full pass ends with
        seconds = time.perf_counter() - started
        client_cpu, server_cpu = cpu_seconds() - client_cpu, _es_cpu_seconds(store.client) - server_cpu
        merging = _wait_for_merges(store.client, store.alias)
        queries = mixture.queries(args.get("queries", 100))  # image-like, then text-like
        exact = exact_top_k(mixture, count, queries)
        modes = list(dict.fromkeys([settings.es_rescore_oversample, 1.0]))
        for oversample in modes:  # warm-up: graph, codes and float vectors into the page cache
            store.oversample = oversample
            for q in queries[:20]:
                store.knn(q, k=10, num_candidates=100)
        ms, hits = {m: [] for m in modes}, {m: [] for m in modes}
        for q, truth in zip(queries, exact, strict=True):
            for oversample in modes:  # alternating per query: both see the same caches and machine
                store.oversample = oversample
                t = time.perf_counter()
                found = store.knn(q, k=10, num_candidates=100)
                ms[oversample].append((time.perf_counter() - t) * 1000)
                hits[oversample].append(
                    len({int(m.relative_path.split("/")[-1][:-4]) for m in found} & set(truth.tolist())) / 10)
        half = len(queries) // 2
        runs = {f"{m:g}": {"knn_p50_ms": statistics.median(ms[m]), "knn_p95_ms": percentile(ms[m], 95),
                           "recall_at_10": float(np.mean(hits[m])), "recall_image": float(np.mean(hits[m][:half])),
                           "recall_text": float(np.mean(hits[m][half:]))} for m in modes}
        configured = runs[f"{settings.es_rescore_oversample:g}"]
        # What the searches above kept: num_candidates 100, or FINDIMAGE_ES_NUM_CANDIDATES if more
        asked = knn_body(queries[0], 10, 100, [], settings)["knn"]
        disk = store.client.indices.stats(index=store.alias, metric="store")["_all"]["total"]["store"]
        return {"documents": store.count(), "bulk_seconds": bulk_seconds, "build_seconds": seconds,
                "docs_per_second": count / seconds, "client_cpu_ms_per_doc": 1000 * client_cpu / count,
                "server_cpu_ms_per_doc": 1000 * server_cpu / count, "merge_wait_seconds": merging,
                "upsert_batch": batch, **configured, "oversample": settings.es_rescore_oversample, "knn": runs,
                "index_disk_mb": disk["size_in_bytes"] / 2**20, "server": {**server, **_es_server_memory(store.client)},
                "index_options": settings.es_index_options, "num_candidates": asked["num_candidates"],
                "hnsw_m": settings.es_hnsw_m, "hnsw_ef_construction": settings.es_hnsw_ef_construction,
                "force_merge_minutes": settings.es_force_merge_minutes}
    finally:
        store.drop()


def _es_server_memory(client) -> dict:
    """The node's heap (used now, max) and, for a node on this machine, its resident set (now, peak)."""
    node = next(iter(client.nodes.stats(metric="jvm")["nodes"].values()))
    heap = node["jvm"]["mem"]
    out = {"heap_used_mb": heap["heap_used_in_bytes"] / 2**20, "heap_max_mb": heap["heap_max_in_bytes"] / 2**20}
    pid = next(iter(client.nodes.info(metric="process")["nodes"].values()))["process"]["id"]
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        out.update(rss_mb=int(fields["VmRSS"].split()[0]) / 1024, peak_rss_mb=int(fields["VmHWM"].split()[0]) / 1024)
    except OSError:  # a remote node: heap only
        pass
    return out


def _es_cpu_seconds(client) -> float:
    nodes = client.nodes.stats(metric="process")["nodes"]
    return sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values()) / 1000


def _wait_for_merges(client, index: str, limit: float = 300.0) -> float:
    """Let the segment merges that follow a bulk load finish, as they would long before users search."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if client.indices.stats(index=index, metric="merge")["_all"]["total"]["merges"]["current"] == 0:
            break
        time.sleep(1)
    return time.perf_counter() - started


# ---- the 1M-vector store ---------------------------------------------------------------------
def store_scale(args: dict) -> dict:
    """Cold open, kNN latency, recall@10 and memory of a large embedded store, in a fresh process."""
    from benchmarks.corpus import VectorMixture
    from findimage.stores.embedded.store import EmbeddedStore

    mixture = VectorMixture(args["seed"])
    queries = mixture.queries(args["queries"])
    exact = np.load(args["exact"])
    evicted = evict_from_page_cache(Path(args["data_dir"]))
    before = memory()
    started = time.perf_counter()
    store = EmbeddedStore(args["data_dir"])
    store.knn(queries[0], k=10)
    cold_open = time.perf_counter() - started
    opened = memory()
    index = store.knn_index

    def recall_and_latency(nprobe: int | None) -> tuple[np.ndarray, list[float]]:
        if nprobe is not None and index.kind == "ivf":
            index.index.nprobe = nprobe
        hits, ms = [], []
        for q, truth in zip(queries, exact, strict=True):
            t = time.perf_counter()
            found = store.knn(q, k=10)
            ms.append((time.perf_counter() - t) * 1000)
            hits.append(len({int(m.relative_path.split("/")[-1][:-4]) for m in found} & set(truth.tolist())))
        return np.asarray(hits) / 10, ms

    default_nprobe = index.index.nprobe if index.kind == "ivf" else None
    half = len(queries) // 2  # image-like first, then text-like
    recall_and_latency(None)  # warm the page cache of the SQLite rows the re-ranking reads
    recall, ms = recall_and_latency(None)
    sweep = []
    if index.kind == "ivf":
        for nprobe in args.get("sweep", []):
            r, m = recall_and_latency(nprobe)
            sweep.append({"nprobe": nprobe, "recall_at_10": float(r.mean()), "recall_text": float(r[half:].mean()),
                          "knn_p50_ms": statistics.median(m)})
        index.index.nprobe = default_nprobe
    return {
        "documents": store.count(), "kind": index.kind, "nlist": getattr(index.index, "nlist", None),
        "nprobe": default_nprobe, "cold_open_seconds": cold_open, "recall_at_10": float(recall.mean()),
        "recall_image": float(recall[:half].mean()), "recall_text": float(recall[half:].mean()),
        "knn_p50_ms": statistics.median(ms), "knn_p95_ms": percentile(ms, 95),
        "vector_memory_mb": round(opened["rss_mb"] - before["rss_mb"], 1),
        "index_bytes_mb": round(index.memory_bytes() / 2**20, 1) if hasattr(index, "memory_bytes") else None,
        "evicted_mb": round(evicted / 2**20), "sweep": sweep, **memory(),
    }


def evict_from_page_cache(folder: Path) -> int:
    """Drop the store's files from the OS page cache, so opening them is a cold start (no root needed)."""
    total = 0
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # dirty pages cannot be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += path.stat().st_size
            finally:
                os.close(fd)
    return total


WORKERS = {"seed": seed_loop, "index": index_pass, "pass": archive_pass, "reader": reader_child, "queries": queries,
           "build": build_store, "store": store_scale, "es": elasticsearch}


def main() -> None:
    name = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    result = WORKERS[name](args)
    sys.stdout.flush()
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()

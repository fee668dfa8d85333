#!/usr/bin/env python3
"""findimage benchmarks: every performance target of issue 5, measured against its baseline in one run.

    .venv/bin/python -m benchmarks.run                 # quick set (a few minutes)
    .venv/bin/python -m benchmarks.run --million       # + the 1M-vector embedded store
    .venv/bin/python -m benchmarks.run --es http://localhost:9200   # + the Elasticsearch store

Builds its own corpora (cached under ${FINDIMAGE_CACHE:-~/.cache/findimage}/bench) and full-size
random-weight models (scripts/make_test_models.py: same architecture and compute cost as the real
CLIP models). Every measurement goes through product code (IndexPass via `index_once`, Searcher,
EmbeddedStore), each in a fresh process so memory figures are its own. Prints a table and writes
benchmarks/results/<timestamp>.json (and latest.json).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make `benchmarks` and the project importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import corpus  # noqa: E402

PHONE_SIZE, SMALL_SIZE = (4032, 3024), (1024, 768)
# What docs/performance.md recommends for the bot's process: steady latency while an indexer shares
# the machine, and both towers in int8 (each checked against fp32 at load).
BOT_SETTINGS = {"FINDIMAGE_TORCH_THREADS": "1", "FINDIMAGE_QUANTIZE": "int8"}


@dataclass
class Row:
    key: str
    what: str
    figure: str
    goal: str
    ok: bool | None  # None: context only, no goal
    value: float | None = None


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work) if args.work else corpus.cache_root() / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.raw: dict = {}
        self.models = _load_script("make_test_models").ensure_models("full")
        self.other_load: list[float] = []
        self.loads: list[float] = []
        if args.onnx:  # the same ViT-B/32-size model in immich's layout on ONNX Runtime, beside the torch path
            onnx = {"FINDIMAGE_IMAGE_MODEL": str(self.models["clip-onnx"]),
                    "FINDIMAGE_TEXT_MODEL": str(self.models["clip-onnx"])}
            self.MODES = {**self.MODES,
                          "onnx_off": ("ONNX fp32, FINDIMAGE_OCR=off", {**onnx, "FINDIMAGE_QUANTIZE": "off",
                                                                        "FINDIMAGE_OCR": "off"}),
                          "onnx_int8": ("ONNX int8, reading text", {**onnx, "FINDIMAGE_QUANTIZE": "int8",
                                                                    "FINDIMAGE_OCR": "on"}),
                          "onnx_int8_off": ("ONNX int8, FINDIMAGE_OCR=off", {**onnx, "FINDIMAGE_QUANTIZE": "int8",
                                                                             "FINDIMAGE_OCR": "off"})}
        if args.baseline:  # the product code before, run as one more indexing mode
            self.MODES = {**self.MODES, "base_on": (f"fp32, reading text: the code in {args.baseline}",
                                                    {"FINDIMAGE_QUANTIZE": "off", "FINDIMAGE_OCR": "on"})}

    # ---- plumbing -------------------------------------------------------------------------------
    def env(self, code: Path = ROOT, **settings) -> dict:
        """A clean environment: no FINDIMAGE_* / ELASTICSEARCH_* from the caller, the bench models, the product
        code of `code` (this checkout, or --baseline's)."""
        env = {k: v for k, v in os.environ.items()
               if k == "FINDIMAGE_CACHE" or not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_", "SLACK_"))}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   FINDIMAGE_IMAGE_MODEL=str(self.models["image"]), FINDIMAGE_TEXT_MODEL=str(self.models["text"]),
                   PYTHONPATH=str(code) + os.pathsep + env.get("PYTHONPATH", ""))
        env.update({k: str(v) for k, v in settings.items()})
        return env

    def worker(self, name: str, args: dict | None = None, code: Path = ROOT, **settings) -> dict:
        """One measurement in a process of its own (benchmarks/workers.py), on this checkout's product code or
        on `code`'s (--baseline: the measurement is this checkout's, the product code measured is that one)."""
        meter, load = CpuMeter(), os.getloadavg()[0]
        # benchmarks/workers.py of this checkout, run by path, with `code` first on sys.path (the current folder)
        start = f"import runpy; runpy.run_path({str(ROOT / 'benchmarks' / 'workers.py')!r}, run_name='__main__')"
        proc = subprocess.run([sys.executable, "-c", start, name, json.dumps(args or {})],
                              cwd=code, env=self.env(code, **settings), capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            raise RuntimeError(f"benchmark worker {name} failed (exit {proc.returncode})")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["other_cpu_cores"] = round(meter.others(), 2)
        result["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # 1-minute, before and after
        self.loads += result["load_average"]
        if name != "es":  # there the Elasticsearch server is the "other" process
            self.other_load.append(result["other_cpu_cores"])
        return result

    def add(self, key, what, figure, goal="", ok=None, value=None) -> None:
        self.rows.append(Row(key, what, figure, goal, ok, value))
        mark = "" if ok is None else ("pass" if ok else "SHORT")
        print(f"  {what}: {figure}  {goal} {mark}".rstrip(), flush=True)

    # ---- 1. indexing throughput, 2. quantization fidelity ------------------------------------------
    # The product's indexing modes: (label, settings). Reading text on is the default.
    MODES = {"on": ("fp32, reading text (the default)", {"FINDIMAGE_QUANTIZE": "off", "FINDIMAGE_OCR": "on"}),
             "off": ("fp32, FINDIMAGE_OCR=off", {"FINDIMAGE_QUANTIZE": "off", "FINDIMAGE_OCR": "off"}),
             "int8": ("int8, reading text", {"FINDIMAGE_QUANTIZE": "int8", "FINDIMAGE_OCR": "on"}),
             "int8_off": ("int8, FINDIMAGE_OCR=off", {"FINDIMAGE_QUANTIZE": "int8", "FINDIMAGE_OCR": "off"})}
    GOALS = {("phone", "on"): 4.0, ("phone", "off"): 6.0, ("phone", "int8"): 6.0, ("phone", "int8_off"): 10.0,
             ("small", "on"): 1.5, ("small", "int8"): 3.5, ("phone", "onnx_int8_off"): 12.0}

    def throughput(self) -> None:
        """Each mode indexes fresh archives of the corpus's sizes (`--phones 60 200`: the rate is the marginal
        one between the two, without the pass's fixed costs: the scan, starting the reader children); the
        seed's loop runs on the first files of the same corpus; rounds alternate the seed's loop and every
        mode, and each keeps its best round. CPU counts every process: the indexer and its reader children."""
        sets = {"phone": (corpus.photo_corpus("phone", PHONE_SIZE, max(self.args.phones), exif=True),
                          self.args.phones, self.args.seed_phones),
                "small": (corpus.photo_corpus("small", SMALL_SIZE, max(self.args.smalls)), self.args.smalls,
                          self.args.seed_smalls)}
        sets = {name: value for name, value in sets.items() if name in self.args.corpora}
        for name, (folder, counts, seed_count) in sets.items():
            files = corpus.corpus_files(folder, max(counts))
            sizes = [f.stat().st_size for f in files]
            self.raw.setdefault("corpora", {})[name] = {
                "files": counts, "seed_loop_files": seed_count, "pixels": PHONE_SIZE if name == "phone" else SMALL_SIZE,
                "mean_file_mb": round(sum(sizes) / len(sizes) / 1e6, 2)}
            seed_dir = _linked(self.work / f"seed-{name}", files[:seed_count])
            archives = {n: _linked(self.work / f"archive-{name}-{n}", files[:n]) for n in counts}
            runs: dict[str, list[dict]] = {mode: [] for mode in ("seed", *self.MODES)}
            for _ in range(self.args.rounds):
                runs["seed"].append(self.worker("seed", {"model": str(self.models["image"]), "folder": str(seed_dir),
                                                         "vectors": str(self.work / f"{name}-seed.npz")}))
                for mode, (_, settings) in self.MODES.items():
                    passes = {}
                    for n, archive in archives.items():
                        data = self.work / f"data-{name}-{mode}"
                        shutil.rmtree(data, ignore_errors=True)
                        keep = n == max(counts) and mode in ("off", "int8_off")
                        code = Path(self.args.baseline) if mode.startswith("base") else ROOT
                        passes[n] = self.worker("index", {"vectors": str(self.work / f"{name}-{mode}.npz")
                                                          if keep else ""}, code,
                                                FINDIMAGE_ARCHIVE=archive, FINDIMAGE_DATA_DIR=data,
                                                **{**settings, **self.extra_settings()})
                    runs[mode].append(marginal(passes))
            best = {mode: max(r, key=lambda x: x["images_per_second"]) for mode, r in runs.items()}
            self.raw.setdefault("throughput", {})[name] = {"best": best, "rounds": runs}

        label = {"phone": "4032x3024 JPEG", "small": "1024x768 JPEG"}
        for name in sets:
            best = self.raw["throughput"][name]["best"]
            seed_rate = best["seed"]["images_per_second"]
            counts = self.raw["corpora"][name]["files"]
            how = f"marginal {counts[0]} -> {counts[-1]} images" if len(counts) > 1 else f"{counts[0]} images"
            self.add(f"seed_{name}", f"seed loop, {label[name]}",
                     f"{seed_rate:.2f} img/s ({best['seed']['cpu_ms_per_image']:.0f} CPU-ms/img)", value=seed_rate)
            for mode, (what, _) in self.MODES.items():
                r = best[mode]
                rate = r["images_per_second"]
                ratio = rate / seed_rate
                goal = self.GOALS.get((name, mode))
                cpu = (f"{r['cpu_ms_per_image']:.0f} CPU-ms/img: indexer {r['indexer_cpu_ms_per_image']:.0f}"
                       + (f", reader children {r['reader_cpu_ms_per_image']:.0f}" if "off" not in mode else ""))
                if mode == "base_on":
                    cpu += f"; this code reading text: {best['on']['images_per_second'] / rate:.2f}x it"
                self.add(f"index_{name}_{mode}", f"index {label[name]}, {what} ({how})",
                         f"{rate:.1f} img/s = {ratio:.2f}x seed ({cpu})", f">= {goal}x" if goal else "",
                         ratio >= goal if goal else None, ratio)
            on, off = best["on"], best["off"]
            self.add(f"text_cost_{name}", f"reading text, {label[name]} without text: CPU-ms per photo vs embedding",
                     f"reader children {on['reader_cpu_ms_per_image']:.0f} CPU-ms/img, "
                     f"{on['reader_cpu_ms_per_image'] / off['cpu_ms_per_image']:.2f}x the pass without reading "
                     f"({off['cpu_ms_per_image']:.0f}); int8: "
                     f"{best['int8']['reader_cpu_ms_per_image'] / best['int8_off']['cpu_ms_per_image']:.2f}x",
                     "<= ~0.5x", on["reader_cpu_ms_per_image"] <= 0.55 * off["cpu_ms_per_image"],
                     on["reader_cpu_ms_per_image"])
        peak = max(p["peak_rss_mb"] for t in self.raw["throughput"].values() for m in self.MODES
                   for r in t["rounds"][m] for p in r["passes"].values())
        readers = max((p.get("readers_peak_rss_mb", 0.0) for t in self.raw["throughput"].values() for m in self.MODES
                       for r in t["rounds"][m] for p in r["passes"].values()), default=0.0)
        self.add("indexer_peak_rss", "indexer peak RSS (reader children apart)",
                 f"{peak / 1024:.2f} GB; reader children up to {readers / 1024:.2f} GB each", "<= 2 GB",
                 peak <= 2048, peak)

        # 2. fidelity: int8 against fp32 over the whole corpus; the decode path against the seed loop
        vectors = {name: {mode: dict(np.load(self.work / f"{name}-{mode}.npz"))
                          for mode in ("seed", "off", "int8_off")} for name in sets}
        cos_int8 = [_cos(v["off"][k], v["int8_off"][k]) for v in vectors.values() for k in v["off"]]
        # the seed loop ignores EXIF orientation: compare the photos stored upright (even numbers)
        cos_path = [_cos(v["seed"][k], v["off"][k]) for name, v in vectors.items() for k in v["seed"]
                    if name != "phone" or int(k[4:8]) % 2 == 0]
        self.raw["fidelity"] = {"int8_vs_fp32": _stats(cos_int8), "pipeline_vs_seed_loop": _stats(cos_path)}
        self.add("int8_min_cosine", "int8 vs fp32 cosine (corpus)",
                 f"min {min(cos_int8):.4f}, mean {np.mean(cos_int8):.4f} (n={len(cos_int8)})", "min >= 0.99",
                 min(cos_int8) >= 0.99, min(cos_int8))
        load_check = next(iter(self.raw["throughput"].values()))["best"]["int8"].get("fidelity")
        if load_check:
            self.add("int8_load_check", "int8 load-time check (8 probes)",
                     f"min {load_check['min_cosine']:.4f}, mean {load_check['mean_cosine']:.4f}", "min >= 0.99",
                     load_check["min_cosine"] >= 0.99, load_check["min_cosine"])
        self.add("pipeline_vs_seed", "fp32 pipeline vs seed loop (draft decode)",
                 f"cosine min {min(cos_path):.4f}, mean {np.mean(cos_path):.4f} (n={len(cos_path)})",
                 value=min(cos_path))

    def extra_settings(self) -> dict:
        return dict(s.split("=", 1) for s in self.args.set)

    # ---- 3. unchanged / changed passes, 4. queries, 7. bot memory ----------------------------------
    def archive_and_queries(self) -> None:
        archive, count, settings = self.reindex()
        self.changed_and_queries(archive, count, settings)

    def reindex(self) -> tuple[Path, int, dict]:
        """The unchanged pass over an archive whose store a pass left (texts read), and the one-time reading
        of an index made without text."""
        count = self.args.archive_files
        archive = archive_of_small_files(count)
        data = self.work / f"data-archive-{count}"
        shutil.rmtree(data, ignore_errors=True)
        # As a pass leaves it: every document with its vector and its text already read.
        built = self.worker("build", {"data_dir": str(data), "archive": str(archive), "seed": 1,
                                      "model": str(self.models["image"]), "texts": True})
        self.raw["archive_store_build"] = built
        settings = dict(FINDIMAGE_ARCHIVE=archive, FINDIMAGE_DATA_DIR=data, **self.extra_settings())
        unchanged = self.worker("pass", {}, **settings)
        self.raw["unchanged_pass"] = unchanged
        ok = (unchanged["seconds"] <= 10 and unchanged["embedded"] == 0 and not unchanged["model_loaded"]
              and unchanged["text_read"] == 0)
        self.add("unchanged_pass", f"unchanged re-index, {count:,} files (texts read before)",
                 f"{unchanged['seconds']:.2f} s, {unchanged['embedded']} embedded, {unchanged['text_read']} read",
                 "<= 10 s, 0 embedded", ok, unchanged["seconds"])
        self.first_reading()
        return archive, count, settings

    def changed_and_queries(self, archive: Path, count: int, settings: dict) -> None:
        changed_files = rewrite_some(archive, self.args.changed_files)
        changed = self.worker("pass", {}, **{"FINDIMAGE_QUANTIZE": "int8", **settings})
        self.raw["changed_pass"] = changed
        ok = changed["images_through_model"] == changed_files == changed["embedded"]
        self.add("changed_pass", f"{changed_files:,} changed among {count:,} (int8)",
                 f"{changed['images_through_model']} images embedded, {changed['seconds']:.1f} s",
                 f"== {changed_files} embedded", ok, changed["images_through_model"])

        images = [str(p) for p in corpus.corpus_files(corpus.photo_corpus("phone", PHONE_SIZE, self.args.phones,
                                                                          exif=True), 12)]
        configs = {"defaults": {}, "bot": BOT_SETTINGS}
        runs = {name: self.worker("queries", {"images": images}, **{**settings, **extra})
                for name, extra in configs.items()}
        self.raw["queries"] = runs
        n = runs["defaults"]["documents"]
        for name, label in (("bot", "bot settings: int8, 1 thread"), ("defaults", "defaults: fp32")):
            q = runs[name]
            self.add(f"text_p50_{name}", f"text query e2e p50/p95, {n:,} docs ({label})",
                     f"{q['text_p50_ms']:.1f} / {q['text_p95_ms']:.1f} ms", "<= 30 / 60 ms",
                     q["text_p50_ms"] <= 30 and q["text_p95_ms"] <= 60, q["text_p50_ms"])
            self.add(f"image_p50_{name}", f"image query e2e p50, 12-MP JPEG ({label})",
                     f"{q['image_p50_ms']:.0f} ms (decode {q['image_decode_p50_ms']:.0f} ms, kNN "
                     f"{q['knn_p50_ms']:.1f} ms)", "<= 150 ms", q["image_p50_ms"] <= 150, q["image_p50_ms"])
            self.add(f"bot_rss_{name}", f"bot-process RSS, both models loaded ({label})",
                     f"{q['rss_mb'] / 1024:.2f} GB", "<= 1.5 GB", q["rss_mb"] <= 1536, q["rss_mb"])

    def first_reading(self) -> None:
        """The one-time reading of an index made without text (FINDIMAGE_OCR=off, or before text was read):
        the next ordinary pass reads every image's text and embeds nothing (with --baseline, the code before
        reads the same store's copy, alternating)."""
        count = self.args.reading_files
        archive = archive_of_small_files(count)
        codes = {"this code": ROOT, **({"the code before": Path(self.args.baseline)} if self.args.baseline else {})}
        results = {}
        for name, code in codes.items():
            data = self.work / f"data-reading-{count}"
            shutil.rmtree(data, ignore_errors=True)
            self.worker("build", {"data_dir": str(data), "archive": str(archive), "seed": 1,
                                  "model": str(self.models["image"])})
            results[name] = self.worker("pass", {}, code, FINDIMAGE_ARCHIVE=archive, FINDIMAGE_DATA_DIR=data,
                                        **self.extra_settings())
        self.raw["first_reading"] = results
        for name, read in results.items():
            rate = read["text_read"] / read["seconds"]
            self.add("first_reading" + ("" if name == "this code" else "_before"),
                     f"reading the text of an existing index, {count:,} files (96x72 JPEGs), {name}",
                     f"{read['seconds']:.1f} s = {rate:,.0f} img/s ({read['cpu_ms_per_image']:.1f} CPU-ms/img, all "
                     f"processes), {read['embedded']} embedded; 100,000 files: ~{100_000 / rate:,.0f} s", value=rate)

    # ---- 5. the 1M-vector embedded store ---------------------------------------------------------
    def million(self) -> None:
        count, n_queries = self.args.million_count, 200
        key = corpus.fingerprint(corpus.VECTOR_VERSION, count, _source_hash("findimage/vector_index.py",
                                                                             "findimage/embedded_store.py"))
        data = self.work / f"store-{count}-{key}"
        if not (data / ".complete").exists():
            for old in self.work.glob(f"store-{count}-*"):
                shutil.rmtree(old, ignore_errors=True)
            built = self.worker("build", {"data_dir": str(data), "count": count, "seed": 2,
                                          "model": str(self.models["image"])})
            (data / ".complete").write_text(json.dumps(built))
        built = json.loads((data / ".complete").read_text())
        built["store"] = str(data)  # built once per version of the store code (delete it to rebuild)
        self.raw["million_build"] = built
        exact_file = self.work / f"exact-{count}-{n_queries}-v{corpus.VECTOR_VERSION}.npy"
        if not exact_file.exists():
            mixture = corpus.VectorMixture(2)
            np.save(exact_file, corpus.exact_top_k(mixture, count, mixture.queries(n_queries)))
        r = self.worker("store", {"data_dir": str(data), "seed": 2, "queries": n_queries, "exact": str(exact_file),
                                  "sweep": self.args.sweep})
        self.raw["million"] = r
        label = f"{count / 1e6:g}M x 512"
        self.add("m_recall", f"{label}: recall@10", f"{r['recall_at_10']:.3f} (image-like {r['recall_image']:.3f}, "
                 f"text-like {r['recall_text']:.3f}; nlist {r['nlist']}, nprobe {r['nprobe']})",
                 ">= 0.98", r["recall_at_10"] >= 0.98, r["recall_at_10"])
        self.add("m_knn_p50", f"{label}: kNN p50", f"{r['knn_p50_ms']:.1f} ms (p95 {r['knn_p95_ms']:.1f})", "<= 20 ms",
                 r["knn_p50_ms"] <= 20, r["knn_p50_ms"])
        mem = r["vector_memory_mb"]
        self.add("m_memory", f"{label}: vector memory",
                 f"{mem / 1024:.2f} GB (index {r['index_bytes_mb'] / 1024:.2f} GB)", "<= 0.6 GB",
                 mem <= 0.6 * 1024, mem)
        self.add("m_cold_open", f"{label}: cold open + first query", f"{r['cold_open_seconds']:.2f} s "
                 f"({r['evicted_mb'] / 1024:.1f} GB of store files evicted from the page cache first)", "<= 5 s",
                 r["cold_open_seconds"] <= 5, r["cold_open_seconds"])
        self.add("m_build", f"{label}: first full build (upserts + checkpoint)",
                 f"{built['seconds']:.0f} s, peak RSS {built['peak_rss_mb'] / 1024:.1f} GB", value=built["seconds"])

    # ---- 6. Elasticsearch -----------------------------------------------------------------------
    def elasticsearch(self) -> None:
        if importlib.util.find_spec("findimage.stores.elasticsearch.store") is None:
            self.add("es", "Elasticsearch store", "skipped: findimage/es_store.py is not there yet")
            return
        count = self.args.es_docs or (self.args.million_count if self.args.million else 100_000)
        r = self.worker("es", {"count": count, "seed": 3, "model": str(self.models["image"]), "queries": 200},
                        ELASTICSEARCH_URL=self.args.es, FINDIMAGE_INDEX=f"findimage-bench-{os.getpid()}",
                        **self.extra_settings())
        self.raw["elasticsearch"] = r
        label = f"ES {r['documents']:,} docs"
        self.add("es_bulk", f"{label}: --full build (bulk, force-merge, settings restored, refresh; server on the same "
                 "2 cores)",
                 f"{r['build_seconds']:,.0f} s = {r['docs_per_second']:,.0f} docs/s (CPU-ms/doc: client "
                 f"{r['client_cpu_ms_per_doc']:.2f}, server {r['server_cpu_ms_per_doc']:.2f}; merges after: "
                 f"{r['merge_wait_seconds']:.0f} s)", ">= 2,000 docs/s", r["docs_per_second"] >= 2000,
                 r["docs_per_second"])
        server = r["server"]
        self.add("es_memory", f"{label}: server memory and index size",
                 f"peak RSS {server.get('peak_rss_mb', float('nan')) / 1024:.2f} GB "
                 f"(heap {server['heap_max_mb'] / 1024:.0f} GB max, "
                 f"{server['heap_used_mb'] / 1024:.2f} GB used after), "
                 f"index {r['index_disk_mb'] / 1024:.2f} GB on disk",
                 value=server.get("peak_rss_mb"))
        baseline = r["knn"]["1"]
        self.add("es_knn", f"{label}: kNN p50 with exact re-ranking ({r['oversample']:g}x, num_candidates "
                 f"{r.get('num_candidates', 100)})",
                 f"{r['knn_p50_ms']:.1f} ms (p95 {r['knn_p95_ms']:.1f}; codes alone {baseline['knn_p50_ms']:.1f} ms)",
                 "<= 40 ms", r["knn_p50_ms"] <= 40, r["knn_p50_ms"])
        self.add("es_recall", f"{label}: recall@10 with exact re-ranking",
                 f"{r['recall_at_10']:.3f} (image-like {r['recall_image']:.3f}, text-like {r['recall_text']:.3f}; "
                 f"codes alone {baseline['recall_at_10']:.3f}; {r['index_options']}, m {r.get('hnsw_m')}, "
                 f"ef_construction {r.get('hnsw_ef_construction')})", ">= 0.98",
                 r["recall_at_10"] >= 0.98, r["recall_at_10"])

    # ---- output -----------------------------------------------------------------------------------
    def report(self, started: float) -> Path:
        machine = machine_info()
        machine["other_cpu_cores_max"] = max(self.other_load, default=0.0)
        print()
        print(render_table(self.rows))
        print()
        busy = machine["other_cpu_cores_max"]
        machine["load_average"] = [min(self.loads, default=0.0), max(self.loads, default=0.0)]
        print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; "
              f"torch {machine['torch']}; other processes used up to {busy:.2f} cores during a step; load average "
              f"{machine['load_average'][0]:.1f}-{machine['load_average'][1]:.1f}"
              + ("  (numbers are disturbed)" if busy > 0.25 else ""))
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        payload = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                   "seconds": round(time.time() - started, 1), "command": " ".join(sys.argv), "machine": machine,
                   "rows": [asdict(r) for r in self.rows], "raw": self.raw}
        path = out / f"{stamp}.json"
        path.write_text(json.dumps(payload, indent=2, default=str))
        (out / "latest.json").write_text(path.read_text())
        print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
              f"({payload['seconds']:.0f} s)")
        return path


# ---- helpers ---------------------------------------------------------------------------------------
def marginal(passes: dict[int, dict]) -> dict:
    """One mode's figures from its passes over archives of different sizes: the marginal rate and CPU between
    the smallest and the largest (the pass's fixed costs cancel out), or the one pass's own."""
    counts = sorted(passes)
    small, large = passes[counts[0]], passes[counts[-1]]
    out = {"passes": {str(n): passes[n] for n in counts}, "fidelity": large.get("fidelity")}
    if len(counts) == 1:
        images, seconds = large["images"], large["seconds"]
        cpu, own, readers = large["cpu_seconds"], large["indexer_cpu_seconds"], large["reader_cpu_seconds"]
    else:
        images, seconds = large["images"] - small["images"], large["seconds"] - small["seconds"]
        cpu = large["cpu_seconds"] - small["cpu_seconds"]
        own = large["indexer_cpu_seconds"] - small["indexer_cpu_seconds"]
        readers = large["reader_cpu_seconds"] - small["reader_cpu_seconds"]
    out.update(images=images, seconds=seconds, images_per_second=images / seconds,
               cpu_ms_per_image=1000 * cpu / images, indexer_cpu_ms_per_image=1000 * own / images,
               reader_cpu_ms_per_image=1000 * readers / images)
    return out


def render_table(rows: list[Row]) -> str:
    header = ("target", "measured", "goal", "")
    body = [(r.what, r.figure, r.goal, "" if r.ok is None else ("pass" if r.ok else "SHORT")) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


class CpuMeter:
    """CPU time the rest of the machine used while a worker ran (in cores), from /proc/stat."""

    def __init__(self):
        self.start = (time.monotonic(), _busy_seconds(), _own_seconds())

    def others(self) -> float:
        wall, busy, own = time.monotonic(), _busy_seconds(), _own_seconds()
        elapsed = wall - self.start[0]
        return max(0.0, ((busy - self.start[1]) - (own - self.start[2])) / elapsed) if elapsed > 0 else 0.0


def _busy_seconds() -> float:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def machine_info() -> dict:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # The same "AMD EPYC" has come with and without AVX-512 (VNNI): the model's CPU-ms per image differ by ~1.3x.
    vector = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    if vector:
        cpu += f" ({', '.join(vector)})"
    import faiss
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                   os.sysconf("SC_PHYS_PAGES") / 2**30),
            "python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
            "git": _git_head()}


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _linked(folder: Path, files: list[Path]) -> Path:
    """A folder holding exactly `files` (hard links: no copies, same bytes)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        try:
            os.link(f, folder / f.name)
        except OSError:
            shutil.copy2(f, folder / f.name)
    return folder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _stats(values: list[float]) -> dict:
    return {"min": float(np.min(values)), "mean": float(np.mean(values)), "n": len(values)}


def _source_hash(*paths: str) -> str:
    return corpus.fingerprint(*[(ROOT / p).read_text() for p in paths])


ARCHIVE_VERSION = 1


def archive_of_small_files(count: int) -> Path:
    """`count` small distinct JPEGs in folders of 1,000 (cached): an archive for the re-index passes."""
    folder = corpus.cache_root() / f"archive-v{ARCHIVE_VERSION}-{count}"
    if (folder / ".complete").exists():
        return folder
    import io

    out = io.BytesIO()
    corpus.photo(1, (96, 72)).save(out, "JPEG", quality=85)
    base = out.getvalue()
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        # bytes after the JPEG end marker are ignored by decoders: distinct files, one decode cost
        (sub / f"IMG_{i:06d}.jpg").write_bytes(base + i.to_bytes(4, "big"))
    (folder / ".complete").write_text(str(count))
    return folder


def rewrite_some(archive: Path, count: int) -> int:
    """Give `count` archive files new content (new pictures, new size and mtime); returns how many."""
    import io

    files = sorted(archive.glob("*/IMG_*.jpg"))
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    salt = int(time.time())
    for n, path in enumerate(chosen):
        out = io.BytesIO()
        corpus.photo(salt * 10_000 + n, (160, 120)).save(out, "JPEG", quality=85)
        path.write_bytes(out.getvalue())
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--million", action="store_true", help="also run the 1M-vector embedded store")
    parser.add_argument("--es", metavar="URL", help="also run the Elasticsearch store against this server")
    parser.add_argument("--only", nargs="*", choices=["index", "archive", "reindex", "million", "es"],
                        help="run only these parts")
    parser.add_argument("--phones", type=int, nargs="+", default=[60, 200],
                        help="4032x3024 JPEGs indexed per mode; two sizes: the marginal rate between them")
    parser.add_argument("--seed-phones", type=int, default=24, help="of those, run through the seed loop")
    parser.add_argument("--smalls", type=int, nargs="+", default=[60, 200], help="1024x768 JPEGs, as --phones")
    parser.add_argument("--seed-smalls", type=int, default=48, help="of those, run through the seed loop")
    parser.add_argument("--corpora", nargs="+", choices=["phone", "small"], default=["phone", "small"],
                        help="the indexing step's corpora")
    parser.add_argument("--rounds", type=int, default=1,
                        help="indexing rounds (baseline and candidates alternate); the best of each counts")
    parser.add_argument("--archive-files", type=int, default=100_000)
    parser.add_argument("--changed-files", type=int, default=1000)
    parser.add_argument("--reading-files", type=int, default=5000,
                        help="files of the index made without text that the next pass reads")
    parser.add_argument("--million-count", type=int, default=1_000_000)
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="nprobe values to sweep at 1M")
    parser.add_argument("--es-docs", type=int, help="documents in the Elasticsearch run (default: 100k, or the "
                        "--million-count with --million)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FINDIMAGE_X=V",
                        help="extra product settings for the indexing and query runs")
    parser.add_argument("--baseline", metavar="DIR",
                        help="a checkout of the code before (git worktree add DIR <commit>): its default indexing "
                             "(reading text on) runs as one more mode, alternating with this code's")
    parser.add_argument("--onnx", action="store_true",
                        help="also index with the same-size model in immich's layout on ONNX Runtime (fp32, int8)")
    parser.add_argument("--work", help="scratch folder (default: the bench cache)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    started = time.time()
    bench = Bench(args)
    parts = args.only or ["index", "archive"] + (["million"] if args.million else []) + (["es"] if args.es else [])
    steps = {"index": ("indexing throughput and quantization fidelity", bench.throughput),
             "archive": ("re-index passes, queries, bot memory", bench.archive_and_queries),
             "reindex": ("the unchanged pass and the one-time reading of an index without text", bench.reindex),
             "million": ("1M-vector embedded store", bench.million),
             "es": ("Elasticsearch store", bench.elasticsearch)}
    for part in parts:
        if part == "es" and not args.es:
            parser.error("--only es needs --es URL")
        title, step = steps[part]
        print(f"== {title}", flush=True)
        step()
    bench.report(started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

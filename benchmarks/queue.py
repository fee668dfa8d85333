#!/usr/bin/env python3
"""Distributed indexing throughput: one `findimage index` process against a planner with 1, 2 and 4
`findimage worker` processes on a Redis queue (Debian's redis-server), over the same photo archive.

    .venv/bin/python -m benchmarks.queue [--photos 240] [--models full|tiny] [--workers 1,2,4] [--rounds 2] [--ocr on]

Each run indexes the archive into a fresh embedded store with `indexer.run.index_once` in this process,
timed without model loads (this process loads its model first, the workers are started and ready before
the clock starts). The single process runs as the indexer does by default (one inference stream per
core); N workers share the cores (FINDIMAGE_TORCH_THREADS = cores / N, at least 1), as one would deploy
them on one machine; with `--ocr on` (reading text, the default of the product) each worker also reads the
text of its buckets with FINDIMAGE_OCR_READERS = cores / N (at least 1). The modes alternate round by round,
so load from elsewhere falls on all of them; each mode's median round is reported. On two cores the point
is that nothing is lost to coordination: the ratio of each run's images/s to the single process's. Written
to benchmarks/results/queue-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks import save_result  # noqa: E402
from benchmarks.bot_latency import load_models  # noqa: E402
from benchmarks.corpus import corpus_files, photo_corpus  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "support"))
from redis_support import Redis  # noqa: E402

FINDIMAGE = str(Path(sys.executable).parent / "findimage")


OCR = "off"  # --ocr


def environment(models: dict, archive: Path, data: Path, queue: str | None, threads: int = 0,
                readers: int = 2) -> dict:
    """`threads`: FINDIMAGE_TORCH_THREADS (0: one inference stream per core, the default); `readers`:
    FINDIMAGE_OCR_READERS (with --ocr on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_", "SLACK_"))}
    env.update(FINDIMAGE_ARCHIVE=str(archive), FINDIMAGE_DATA_DIR=str(data), FINDIMAGE_IMAGE_MODEL=str(models["image"]),
               FINDIMAGE_TEXT_MODEL=str(models["text"]), FINDIMAGE_OCR=OCR, HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", FINDIMAGE_TORCH_THREADS=str(threads),
               FINDIMAGE_OCR_READERS=str(readers))
    if queue:
        env.update(FINDIMAGE_QUEUE_URL=queue, FINDIMAGE_BUCKET_SIZE="16", FINDIMAGE_QUEUE_IN_FLIGHT="8")
    return env


def timed_index(env: dict) -> tuple[float, str]:
    """One `findimage index` pass in this process (its image model loaded before the clock starts, as
    the workers' are): the pass alone is timed, in both modes."""
    from findimage.backends import image_embedder
    from findimage.config import load_settings
    from indexer.run import index_once

    settings = load_settings(env, env_file=None)
    image_embedder(settings).load()  # the process's shared model: the pass below uses this one
    started = time.monotonic()
    summary = index_once(settings, progress=False)
    return time.monotonic() - started, summary.line()


def start_workers(count: int, env: dict) -> list[subprocess.Popen]:
    workers = [subprocess.Popen([FINDIMAGE, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True) for _ in range(count)]
    for worker in workers:  # each has loaded its model once it says it is ready
        assert worker.stdout is not None
        for line in worker.stdout:
            if "ready" in line:
                break
    return workers


def one_round(models: dict, archive: Path, tmp: Path, queue: str, counts: list[int], photos: int,
              round_no: int) -> list[dict]:
    cores = os.cpu_count() or 1
    seconds, line = timed_index(environment(models, archive, tmp / f"single-{round_no}", None))
    runs = [{"mode": "single process", "workers": 0, "torch_threads": cores, "seconds": round(seconds, 2),
             "images_per_second": round(photos / seconds, 2), "summary": line}]
    for count in counts:
        threads = max(1, cores // count)
        env = environment(models, archive, tmp / f"queue-{count}-{round_no}", queue, threads,
                          max(1, cores // count))
        workers = start_workers(count, env)
        try:
            seconds, line = timed_index(env)
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(30)
        runs.append({"mode": "planner + workers", "workers": count, "torch_threads": threads,
                     "seconds": round(seconds, 2), "images_per_second": round(photos / seconds, 2), "summary": line})
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=240)
    parser.add_argument("--models", choices=("tiny", "full"), default="full")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ocr", choices=("on", "off"), default="off", help="reading text (FINDIMAGE_OCR)")
    args = parser.parse_args()
    global OCR
    OCR = args.ocr
    counts = [int(n) for n in args.workers.split(",")]
    models = load_models(args.models)
    source = photo_corpus("queue", (1600, 1200), args.photos)
    rounds: list[list[dict]] = []
    load: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        for n, path in enumerate(corpus_files(source, args.photos)):
            (archive / f"folder-{n % 8}").mkdir(exist_ok=True)
            shutil.copy(path, archive / f"folder-{n % 8}" / path.name)
        redis = Redis(Path(tmp))
        redis.start()
        try:
            for round_no in range(args.rounds):
                rounds.append(one_round(models, archive, Path(tmp), redis.url, counts, args.photos, round_no))
                load.append(os.getloadavg()[0])
                print(json.dumps(rounds[-1]), file=sys.stderr)
        finally:
            redis.stop()
    runs = []
    for n in range(len(rounds[0])):
        median = sorted((r[n] for r in rounds), key=lambda run: run["seconds"])[len(rounds) // 2]
        runs.append({**median, "rounds_seconds": [r[n]["seconds"] for r in rounds]})
    baseline = runs[0]["images_per_second"]
    for run in runs:
        run["ratio"] = round(run["images_per_second"] / baseline, 3)
    result = {"photos": args.photos, "models": args.models, "cores": os.cpu_count(), "rounds": args.rounds,
              "ocr": args.ocr,
              "runs": runs, "load_average_after_each_round": [round(x, 2) for x in load],
              "note": "the pass alone is timed: every process's image model is loaded before the clock starts; "
                      "each mode's median round",
              "run_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(result, indent=2))
    out = save_result("queue", result)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

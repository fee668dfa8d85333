#!/usr/bin/env python3
"""Distributed indexing throughput: one `findimage index` process against a planner with 1, 2 and 4
`findimage worker` processes on a Redis queue (Debian's redis-server), over the same photo archive.

    .venv/bin/python -m benchmarks.queue [--photos 240] [--models full|tiny] [--workers 1,2,4] [--rounds 1]

Each run indexes the archive into a fresh embedded store with `indexer.run.index_once` in this process,
timed without model loads (this process loads its model first, the workers are started and ready before
the clock starts). On two cores the point is that
nothing is lost to coordination: the ratio of each run's images/s to the single process's, and per core
used. Written to benchmarks/results/queue-<time>.json.
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


def environment(models: dict, archive: Path, data: Path, queue: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_", "SLACK_"))}
    env.update(FINDIMAGE_ARCHIVE=str(archive), FINDIMAGE_DATA_DIR=str(data), FINDIMAGE_IMAGE_MODEL=str(models["image"]),
               FINDIMAGE_TEXT_MODEL=str(models["text"]), FINDIMAGE_OCR="off", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", FINDIMAGE_TORCH_THREADS="1")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=240)
    parser.add_argument("--models", choices=("tiny", "full"), default="full")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    models = load_models(args.models)
    source = photo_corpus("queue", (1600, 1200), args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        for n, path in enumerate(corpus_files(source, args.photos)):
            (archive / f"folder-{n % 8}").mkdir(exist_ok=True)
            shutil.copy(path, archive / f"folder-{n % 8}" / path.name)
        redis = Redis(Path(tmp))
        redis.start()
        queue = redis.url
        runs = []
        try:
            seconds, line = timed_index(environment(models, archive, Path(tmp) / "single", None))
            baseline = args.photos / seconds
            runs.append({"mode": "single process", "workers": 0, "seconds": round(seconds, 2),
                         "images_per_second": round(baseline, 2), "ratio": 1.0, "summary": line})
            for count in (int(n) for n in args.workers.split(",")):
                env = environment(models, archive, Path(tmp) / f"queue-{count}", queue)
                workers = start_workers(count, env)
                try:
                    seconds, line = timed_index(env)
                finally:
                    for worker in workers:
                        os.killpg(worker.pid, signal.SIGTERM)
                        worker.wait(30)
                rate = args.photos / seconds
                runs.append({"mode": "planner + workers", "workers": count, "seconds": round(seconds, 2),
                             "images_per_second": round(rate, 2), "ratio": round(rate / baseline, 3),
                             "ratio_per_core": round(rate / baseline / min(count, os.cpu_count() or 1), 3),
                             "summary": line})
        finally:
            redis.stop()
    result = {"photos": args.photos, "models": args.models, "cores": os.cpu_count(), "runs": runs,
              "note": "the pass alone is timed: every process's image model is loaded before the clock starts",
              "run_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(result, indent=2))
    out = save_result("queue", result)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The torch path against ONNX Runtime for the same ViT-B/32-size CLIP: what a bot process holds and how fast
it turns a text query into a vector, and what the torch extra adds to an install.

    .venv/bin/python -m benchmarks.runtimes [--queries 200]

1. Per runtime and precision (torch via sentence-transformers: the default pair; immich's layout on ONNX
   Runtime: one folder for both sides), in a fresh process each, alternating: both embedders loaded as
   the bot loads them (findimage.backends), the process's RSS, whether torch was imported, the text
   vector's p50/p95 over `--queries` queries (one at a time, as the bot asks), one 224-px picture's p50.
   The models are scripts/make_test_models.py's random-weight "full" ones: the real models' architecture
   and compute, no semantics.
2. Install size: the files (their RECORD sizes) of the packages that only the torch extra brings, against
   those of the base install, as installed in this environment (torch's CPU build).

Printed and written to benchmarks/results/runtimes-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

QUERIES = ["a snow covered mountain", "ein Hund am Strand", "Sommerfest im Biergarten", "red bicycle in the rain",
           "whiteboard with a diagram", "Kellertreppe nach dem Umbau", "two cats on a sofa", "Messe Hannover Stand"]

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
from PIL import Image
from findimage.backends import image_embedder, text_embedder
from findimage.config import load_settings
queries, count = json.loads(sys.argv[1]), int(sys.argv[2])
settings = load_settings(env_file=None)
started = time.perf_counter()
images, texts = image_embedder(settings), text_embedder(settings)
images.load(); texts.load()
loaded = time.perf_counter() - started
texts.embed_texts(queries[:2])
times = []
for i in range(count):
    t = time.perf_counter()
    texts.embed_texts([queries[i % len(queries)] + f" {i}"])
    times.append(time.perf_counter() - t)
picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8))
images.embed_images([picture])
image_times = []
for _ in range(20):
    t = time.perf_counter(); images.embed_images([picture]); image_times.append(time.perf_counter() - t)
print(json.dumps({"text_p50_ms": float(np.percentile(times, 50) * 1000),
                  "text_p95_ms": float(np.percentile(times, 95) * 1000),
                  "image_p50_ms": float(np.percentile(image_times, 50) * 1000),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "load_s": loaded,
                  "torch_imported": "torch" in sys.modules,
                  "int8": bool(getattr(images, "quantized", False)) and bool(getattr(texts, "quantized", False))}))
"""


def measure(settings: dict[str, str], queries: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT), **settings)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(QUERIES), str(queries)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements pull in (markers and extras of the dependencies
    ignored: what this environment holds)."""
    seen: set[str] = set()
    todo = [re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0] for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0] for r in dist.requires or [] if "extra ==" not in r]
    return seen


def size_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            total += file.size or 0
    return total / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import make_test_models

    from findimage.models.onnx_runtime import int8_cache

    models = make_test_models.ensure_models("full")
    shutil.rmtree(int8_cache(), ignore_errors=True)  # the first start quantizes, as on a fresh install
    onnx = str(models["clip-onnx"])
    torch_pair = {"FINDIMAGE_IMAGE_MODEL": str(models["image"]), "FINDIMAGE_TEXT_MODEL": str(models["text"])}
    onnx_pair = {"FINDIMAGE_IMAGE_MODEL": onnx, "FINDIMAGE_TEXT_MODEL": onnx}
    configs = {f"{runtime}, {precision}": {**pair, "FINDIMAGE_QUANTIZE": "off" if precision == "fp32" else "int8",
                                           "FINDIMAGE_TORCH_THREADS": "1"}
               for runtime, pair in (("torch", torch_pair), ("ONNX Runtime", onnx_pair))
               for precision in ("fp32", "int8")}
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, settings in configs.items():
            runs[name].append(measure(settings, args.queries))
    best = {name: min(r, key=lambda x: x["text_p50_ms"]) for name, r in runs.items()}

    print(f"bot process, both models loaded (one thread; query times: best of {args.rounds}; RSS and load time: "
          "the first start, then a restart, which opens the int8 copies kept by the first):")
    for name, r in best.items():
        first, last = runs[name][0], runs[name][-1]
        print(f"  {name:22s} text p50 {r['text_p50_ms']:6.1f} ms, p95 {r['text_p95_ms']:6.1f} ms; one picture "
              f"{r['image_p50_ms']:6.1f} ms; RSS {first['rss_mb'] / 1024:.2f} / {last['rss_mb'] / 1024:.2f} GB; "
              f"loaded in {first['load_s']:.1f} / {last['load_s']:.1f} s; torch imported: "
              f"{'yes' if r['torch_imported'] else 'no'}; int8 used: {'yes' if r['int8'] else 'no'}")

    base = metadata.requires("findimage") or []
    core = closure([r for r in base if "extra ==" not in r])
    extra = closure([r.split(";")[0] for r in base if 'extra == "torch"' in r]) - core
    sizes = {"base_mb": size_mb(core), "torch_extra_mb": size_mb(extra), "torch_extra_packages": sorted(extra)}
    print(f"install: the base {sizes['base_mb']:.0f} MB ({len(core)} packages); the torch extra adds "
          f"{sizes['torch_extra_mb']:.0f} MB ({', '.join(sorted(extra))})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"runtimes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    file.write_text(json.dumps({"command": " ".join(sys.argv), "best": best, "runs": runs, "install": sizes},
                               indent=1))
    print(f"wrote {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

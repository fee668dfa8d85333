#!/usr/bin/env python3
"""Where an indexed photo's CPU goes: the stages of indexer/reading.py and the image embedder, each timed
alone (CPU time of this process) on the same 12-MP phone JPEGs benchmarks/run.py indexes.

    .venv/bin/python -m benchmarks.stages [--photos 32] [--model image|clip-onnx] [--quantize off|int8]

`--model`: the random-weight ViT-B/32 of scripts/make_test_models.py ("full"), on torch through
sentence-transformers (image) or in immich's layout on ONNX Runtime (clip-onnx). The embedding runs in
batches of 16 on the runtime's threads; its CPU time counts every thread, its wall time is printed beside.
The sum is what one photo costs the indexer with reading text off; benchmarks/run.py measures the pass.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks import corpus  # noqa: E402
from benchmarks.run import PHONE_SIZE  # noqa: E402

T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--model", choices=["image", "clip-onnx"], default="image")
    parser.add_argument("--quantize", choices=["off", "int8"], default="off")
    args = parser.parse_args(argv)

    import make_test_models

    models = make_test_models.ensure_models("full")
    os.environ.update(FINDIMAGE_IMAGE_MODEL=str(models[args.model]), FINDIMAGE_QUANTIZE=args.quantize,
                      FINDIMAGE_TEXT_MODEL=str(models["clip-onnx" if args.model == "clip-onnx" else "text"]))
    from findimage.backends import image_embedder
    from findimage.config import load_settings
    from findimage.imaging import prepare_bytes
    from findimage.models.text_reader import probe_copy

    files = corpus.corpus_files(corpus.photo_corpus("phone", PHONE_SIZE, args.photos, exif=True), args.photos)
    embedder = image_embedder(load_settings(env_file=None))
    embedder.load()
    side = embedder.image_input_side()
    spent: dict[str, float] = {}

    def timed(stage: str, work: Callable[..., T], *args: object) -> T:
        started = time.process_time()
        result = work(*args)
        spent[stage] = spent.get(stage, 0.0) + time.process_time() - started
        return result

    pictures = []
    for file in files:
        data = timed("read the file", file.read_bytes)
        timed("SHA-256", hashlib.sha256, data)
        prepared = timed("JPEG decode (drafted)", prepare_bytes, data, side)
        timed("the probe's copy", probe_copy, prepared.image)
        pictures.append(timed("the model's resize", embedder.shrink, prepared.image))
    embedder.embed_images(pictures[:4])  # warm
    wall = time.perf_counter()
    for start in range(0, len(pictures), 16):
        timed("embedding", embedder.embed_images, pictures[start:start + 16])
    wall = time.perf_counter() - wall

    n = len(files)
    print(f"{args.model}, {args.quantize}, {n} photos of {PHONE_SIZE[0]}x{PHONE_SIZE[1]}: CPU-ms per photo")
    for stage, seconds in spent.items():
        print(f"  {stage:24s} {seconds / n * 1000:7.1f}")
    print(f"  {'total':24s} {sum(spent.values()) / n * 1000:7.1f}   (embedding wall {wall / n * 1000:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

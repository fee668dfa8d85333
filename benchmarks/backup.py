#!/usr/bin/env python3
"""How long `findimage backup` and `findimage restore` take on the embedded store of a large archive.

    .venv/bin/python -m benchmarks.backup [--documents 100000] [--remembered 1000]

The store is filled directly through the store API (random unit vectors, paths of a few words, dates),
with its kNN snapshot saved as a pass leaves it, and a remembered channel of `--remembered` postings. Then,
through the product's own code (findimage.backends.backups, what the commands run): the backup, the
restore into an empty data folder (checks, `PRAGMA integrity_check`, files moved into place, the store
opened), and the first kNN search on the restored store, which loads the copied snapshot; for comparison
the first search where the snapshot is left out (the kNN index rebuilt from SQLite). Printed and written
to benchmarks/results/backup-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks import save_result  # noqa: E402
from findimage.backends import backups, open_remembered  # noqa: E402
from findimage.config import load_settings  # noqa: E402
from findimage.records import ImageDoc, Posted, image_id_for, posted_path  # noqa: E402
from findimage.stores.base import ChannelState  # noqa: E402
from findimage.stores.embedded.store import EmbeddedStore  # noqa: E402

MODEL = "bench"
BATCH = 2000
WORDS = ["summer", "party", "stage", "mountain", "office", "board", "team", "trip", "garden", "studio"]


def documents(count: int, rng: np.random.Generator):
    for start in range(0, count, BATCH):
        vectors = rng.standard_normal((min(BATCH, count - start), 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = []
        for offset, vector in enumerate(vectors):
            i = start + offset
            path = f"{2000 + i % 25}/{WORDS[i % 10]} {WORDS[(i // 10) % 10]}/IMG_{i:07d}.jpg"
            batch.append(ImageDoc(image_id_for(path), path.rsplit("/", 1)[1], path, vector, f"{i:064x}", 2_000_000,
                                  1.7e9, 4000, 3000, time.time(), MODEL, f"{2000 + i % 25}-06-01T12:00:00", "exif"))
        yield batch


def fill(settings, count: int, remembered_count: int) -> float:
    started = time.perf_counter()
    rng = np.random.default_rng(1)
    store = EmbeddedStore(settings.data_dir)
    for batch in documents(count, rng):
        store.upsert(batch)
    store.checkpoint()  # the kNN snapshot, as each pass leaves it
    store.close()
    remembered = open_remembered(settings)
    assert remembered is not None
    remembered.registry.save_channel(ChannelState("C0TEAM", "U0ANNA", time.time(), 0.0))
    items = []
    for i, vector in enumerate(rng.standard_normal((remembered_count, 512)).astype(np.float32)):
        posted = Posted("C0TEAM", f"F{i:07d}", f"{1772704800 + i}.000100", "U0ANNA", "https://x", f"photo {i}")
        items.append((ImageDoc(posted.image_id, posted.title, posted_path("C0TEAM", posted.file_id, posted.title),
                               vector / np.linalg.norm(vector), f"sha-{i}", 10, 1.0, 8, 8, time.time(), MODEL,
                               "2026-03-05T10:00:00", "slack"), posted))
    for start in range(0, len(items), 500):
        remembered.add(items[start:start + 500], MODEL)
    remembered.close()
    return time.perf_counter() - started


def first_search(folder: Path) -> float:
    started = time.perf_counter()
    store = EmbeddedStore(folder)
    store.knn(np.ones(512, np.float32) / np.sqrt(512), 10)
    store.close()
    return time.perf_counter() - started


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--remembered", type=int, default=1_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="findimage-backup-bench-") as tmp:
        root = Path(tmp)
        settings = load_settings({"FINDIMAGE_DATA_DIR": str(root / "data")}, env_file=None)
        filled = fill(settings, args.documents, args.remembered)

        started = time.perf_counter()
        made = backups(settings, ("indexer-state.json",)).make(str(root / "backup"))
        backup_s = time.perf_counter() - started
        target = dataclasses.replace(settings, data_dir=root / "restored")
        started = time.perf_counter()
        restored = backups(target, ("indexer-state.json",)).restore(str(root / "backup"))
        restore_s = time.perf_counter() - started
        search_s = first_search(target.data_dir)

        without = root / "without-snapshot"
        shutil.copytree(root / "backup", without / "data", ignore=shutil.ignore_patterns("vectors*", "manifest.json"))
        rebuild_s = first_search(without / "data")
        result = {"documents": args.documents, "remembered": args.remembered, "fill_s": round(filled, 1),
                  "backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2),
                  "first_search_restored_s": round(search_s, 2), "first_search_rebuilding_s": round(rebuild_s, 2),
                  "data_mb": round(size_mb(root / "data"), 1), "backup_mb": round(size_mb(root / "backup"), 1),
                  "said": made + restored}
    print(f"{args.documents:,} documents and {args.remembered:,} remembered images (filled in {filled:.0f} s, "
          f"{result['backup_mb']:,.0f} MB backed up)")
    print(f"  backup:                                  {backup_s:6.1f} s")
    print(f"  restore (checked, moved, opened):        {restore_s:6.1f} s")
    print(f"  first search, the snapshot restored:     {search_s:6.1f} s")
    print(f"  first search, the kNN index rebuilt:     {rebuild_s:6.1f} s")
    out = save_result("backup", result)
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

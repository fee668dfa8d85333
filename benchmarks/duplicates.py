#!/usr/bin/env python3
"""Near-identical pictures (findimage/fingerprint.py): how well the duplicates grouping separates copies
from look-alikes, what a fingerprint costs, and how long grouping 100,000 fingerprints takes.

    .venv/bin/python -m benchmarks.duplicates [--originals 40] [--fingerprints 100000]

1. A generated set (tests/support/near_copies.py): `--originals` scenes of four kinds, each with its 23
   copies (resized, re-compressed, converted, cut by up to 10% of a side, EXIF-rotated, captioned,
   watermarked, a sticker, reposts) and 3 look-alikes (objects moved, another texture, light from another
   side), every file decoded as the indexer decodes it. Pairwise precision and recall of `group` (a pair
   is right when both are the same original or its copies), the aligned distance per transformation, and
   for comparison pHash (imagehash's algorithm: 32 x 32 grey, 8 x 8 DCT signs against their median) of
   the whole picture.
2. CPU per picture: `fingerprint` of an already decoded 224-px picture, and from a JPEG's bytes
   (`prepare_bytes` drafted to 64 px, then `fingerprint`), 1024 x 768 and 4032 x 3024; `same_picture` of
   a copy and of a look-alike.
3. `group` over `--fingerprints` fingerprints: the set above, and random pictures filling up the rest
   (16 x 16 grids with a photo's 1/f spectrum, every tenth a slightly changed copy of the one before, so
   10% are in pairs): wall and CPU seconds, and the candidate pairs its keys found.
4. `findimage duplicates` on an embedded store holding those fingerprints as documents (random vectors):
   the store opened, every fingerprint read, grouped and the report's lines made, wall and CPU seconds
   (`--no-store` leaves it out; writing the store takes a minute or two).

Printed and written to benchmarks/results/duplicates-<time>.json.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from near_copies import as_indexed, corpus  # noqa: E402
from photos import jpeg_bytes  # noqa: E402

from benchmarks import save_result  # noqa: E402
from findimage import fingerprint as fp  # noqa: E402
from findimage.imaging import prepare_bytes  # noqa: E402

# The embedding's cost, from docs/performance.md (run of 2026-11-27): what the indexer spends per picture
# (decode, embed, store) with the full-size CLIP ViT-B/32 image model.
EMBEDDING_CPU_MS = {"1024x768 JPEG, fp32": 102, "1024x768 JPEG, int8": 37, "4032x3024 JPEG, fp32": 130,
                    "4032x3024 JPEG, int8": 66}


def cpu_ms(work, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        work()
    return round((time.process_time() - started) / count * 1000, 3)


# scipy.fftpack.dct's type II (unnormalised), as imagehash calls it, on 32 points.
_DCT32 = 2 * np.cos(np.pi * np.arange(32)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)


def phash(image: Image.Image) -> np.ndarray:
    """imagehash.phash's bits (hash_size 8, highfreq_factor 4)."""
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = (_DCT32 @ pixels @ _DCT32.T)[:8, :8]
    return (low > np.median(low)).reshape(-1)


def generated_set(originals: int) -> tuple[list, float]:
    """[(name, original, {copy: (fingerprint, phash)}, {look-alike: ...})], and fingerprint CPU-ms per picture."""
    found, spent, pictures = [], 0.0, 0
    for case in corpus(originals):
        decoded = {"original": as_indexed(case.original)}
        decoded.update({what: as_indexed(data) for what, data in case.copies.items()})
        decoded.update({f"look-alike: {what}": as_indexed(data) for what, data in case.lookalikes.items()})
        started = time.process_time()
        prints = {what: fp.fingerprint(image) for what, image in decoded.items()}
        spent += time.process_time() - started
        pictures += len(prints)
        found.append((case.name, {what: (prints[what], phash(image)) for what, image in decoded.items()}))
    return found, spent / pictures * 1000


def grouping_quality(pictures: list) -> dict:
    items = [((name, what), print_) for name, kept in pictures for what, (print_, _) in kept.items()]
    started = time.perf_counter()
    groups = fp.group(items)
    seconds = time.perf_counter() - started

    def family(member: tuple[str, str]) -> tuple[str, ...]:
        name, what = member
        return (name, what) if what.startswith("look-alike") else (name,)

    right = wrong = 0
    for members in groups:
        for a, b in itertools.combinations(members, 2):
            right, wrong = (right + 1, wrong) if family(a) == family(b) else (right, wrong + 1)
    truth = sum(math_pairs(sum(1 for what in kept if not what.startswith("look-alike"))) for _, kept in pictures)
    lookalikes_grouped = sum(1 for members in groups for m in members if m[1].startswith("look-alike"))
    return {"pictures": len(items), "groups": len(groups), "pairs_right": right, "pairs_wrong": wrong,
            "pairs_true": truth, "precision": round(right / max(1, right + wrong), 4),
            "recall": round(right / truth, 4), "lookalikes_grouped": lookalikes_grouped,
            "group_seconds": round(seconds, 2)}


def math_pairs(n: int) -> int:
    return n * (n - 1) // 2


def distances(pictures: list) -> dict:
    """Per transformation: the aligned distance's and pHash's largest (copies) or smallest (look-alikes), and
    how many same_picture decides wrong."""
    table: dict[str, dict[str, list[float]]] = {}
    for _, kept in pictures:
        original, original_hash = kept["original"]
        for what, (print_, bits) in kept.items():
            if what != "original":
                row = table.setdefault(what, {"distance": [], "phash_bits": []})
                row["distance"].append(fp.distance(original, print_))
                row["phash_bits"].append(int(np.count_nonzero(bits != original_hash)))
    summary = {}
    for what, row in table.items():
        other = what.startswith("look-alike")
        pick = min if other else max
        summary[what] = {"distance": round(pick(row["distance"]), 3), "phash_bits": pick(row["phash_bits"]),
                         "decided_wrong": sum((d <= fp.SAME_THRESHOLD) == other for d in row["distance"])}
    return summary


def lookup_recall(pictures: list) -> dict:
    """A store's lookup: each copy's probes against its original's keys; and how often another original's
    picture is a candidate (a probe hits its keys)."""
    found = missed = 0
    for _, kept in pictures:
        keys = set(kept["original"][0].keys())
        for what, (print_, _) in kept.items():
            if what != "original" and not what.startswith("look-alike"):
                found, missed = (found + 1, missed) if set(print_.probes()) & keys else (found, missed + 1)
    keys = [set(kept["original"][0].keys()) for _, kept in pictures]
    probes = [(i, set(print_.probes())) for i, (_, kept) in enumerate(pictures)
              for what, (print_, _) in kept.items() if what != "original"]
    collisions = sum(1 for owner, asked in probes for i, stored in enumerate(keys) if i != owner and asked & stored)
    return {"copies_found": found, "copies_missed": missed,
            "other_pictures_hit": round(collisions / (len(probes) * (len(keys) - 1)), 6)}


def costs() -> dict:
    decoded = as_indexed(jpeg_bytes(5, (1024, 768)))
    files = {"1024x768 JPEG": jpeg_bytes(6, (1024, 768)), "4032x3024 JPEG": jpeg_bytes(7, (4032, 3024))}
    result = {"fingerprint_decoded_224px_cpu_ms": cpu_ms(lambda: fp.fingerprint(decoded), 200)}
    for name, data in files.items():
        result[f"fingerprint_from_{name.replace(' ', '_')}_cpu_ms"] = cpu_ms(
            lambda data=data: fp.fingerprint(prepare_bytes(data, fp.MIN_SIDE).image), 40)
        result[f"decode_{name.replace(' ', '_')}_for_the_embedding_cpu_ms"] = cpu_ms(
            lambda data=data: prepare_bytes(data, 224), 10)
    return result


def comparison_costs(pictures: list) -> dict:
    kept = pictures[0][1]
    original, copy, other = kept["original"][0], kept["jpeg q50"][0], kept["look-alike: objects moved"][0]
    return {"same_picture_copy_cpu_ms": cpu_ms(lambda: fp.same_picture(original, copy), 100),
            "same_picture_lookalike_cpu_ms": cpu_ms(lambda: fp.same_picture(original, other), 50)}


def fillers(count: int, rng: np.random.Generator) -> list[fp.Fingerprint]:
    """Random pictures as 16 x 16 grids with a photo's falling spectrum; every tenth is the one before with
    a little noise and a brightness change (a copy)."""
    u = np.arange(fp.GRID)
    falloff = 1 / (1 + np.hypot(u[:, None], u[None, :])) ** 1.5
    coefficients = rng.standard_normal((count, fp.GRID, fp.GRID)) * falloff
    coefficients[:, 0, 0] = 0
    grids = fp._DCT.T @ coefficients @ fp._DCT  # the inverse of the orthonormal DCT
    grids *= rng.uniform(15, 70, (count, 1, 1)) / grids.std(axis=(1, 2), keepdims=True)
    grids += rng.uniform(50, 200, (count, 1, 1))
    copies = np.arange(10, count, 10)
    grids[copies] = grids[copies - 1] + rng.normal(0, 1, (len(copies), fp.GRID, fp.GRID)) + rng.uniform(-6, 6, (
        len(copies), 1, 1))
    cells = np.clip(np.rint(grids), 0, 255).astype(np.uint8)
    aspects = rng.choice([0, 1700, -1700, 2393, 1000], count)  # square, 4:3, 3:4, 3:2, about 1.18
    aspects[copies] = aspects[copies - 1]
    return [fp.Fingerprint(cells[i].tobytes(), int(aspects[i])) for i in range(count)]


def grouping_at_scale(pictures: list, total: int) -> dict:
    items = [((name, what), print_) for name, kept in pictures for what, (print_, _) in kept.items()]
    items += [(("filler", i), print_) for i, print_ in enumerate(fillers(total - len(items), np.random.default_rng(1)))]
    candidates = len(fp._candidates(fp._dct(np.frombuffer(b"".join(p.grid for _, p in items), np.uint8)
                                            .reshape(-1, fp.GRID, fp.GRID))))
    wall, cpu = time.perf_counter(), time.process_time()
    groups = fp.group(items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"fingerprints": len(items), "group_seconds": round(wall, 2), "group_cpu_seconds": round(cpu, 2),
            "candidate_pairs": candidates, "groups": len(groups),
            "pictures_in_groups": sum(len(members) for members in groups)}


def report_at_scale(pictures: list, total: int) -> dict:
    """`findimage duplicates`' work (findimage_cli.cmd_duplicates) on an embedded store of `total` documents."""
    import tempfile

    from findimage.duplicates import duplicate_groups, summary_lines
    from findimage.records import DIMS, ImageDoc, image_id_for
    from findimage.stores.embedded.store import EmbeddedStore

    prints = [print_ for _, kept in pictures for print_, _ in kept.values()]
    prints += fillers(total - len(prints), np.random.default_rng(1))
    rng = np.random.default_rng(2)
    vector = np.ones(DIMS, np.float32) / np.sqrt(DIMS)  # the vectors play no part: one for all
    with tempfile.TemporaryDirectory(prefix="findimage-duplicates-") as folder:
        written = time.perf_counter()
        store = EmbeddedStore(folder)
        for start in range(0, len(prints), 5000):
            docs = []
            for i in range(start, min(start + 5000, len(prints))):
                path = f"folder-{i // 1000}/picture-{i}.jpg"
                docs.append(ImageDoc(image_id_for(path), f"picture-{i}.jpg", path, vector, f"sha-{i}",
                                     int(rng.integers(50_000, 5_000_000)), 0.0, 640, 480, 0.0, "m",
                                     fingerprint=prints[i].to_string()))
            store.upsert(docs)
        store.checkpoint()
        store.close()
        written = time.perf_counter() - written
        wall, cpu = time.perf_counter(), time.process_time()
        store = EmbeddedStore(folder)
        groups = duplicate_groups(store)
        lines = summary_lines(groups)
        store.close()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"documents": len(prints), "store_written_seconds": round(written, 1),
            "duplicates_seconds": round(wall, 2), "duplicates_cpu_seconds": round(cpu, 2), "groups": len(groups),
            "first_line": lines[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=40)
    parser.add_argument("--fingerprints", type=int, default=100_000)
    parser.add_argument("--no-store", action="store_true", help="leave out `findimage duplicates` on a store")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    pictures, fingerprint_ms = generated_set(args.originals)
    generated_s = time.perf_counter() - started
    quality = grouping_quality(pictures)
    result = {
        "originals": args.originals, "generated_seconds": round(generated_s, 1),
        "threshold": fp.SAME_THRESHOLD, "grouping": quality, "by_transformation": distances(pictures),
        "lookup": lookup_recall(pictures),
        "cpu_ms": {"fingerprint_in_the_set": round(fingerprint_ms, 3), **costs(), **comparison_costs(pictures)},
        "embedding_cpu_ms_from_docs": EMBEDDING_CPU_MS,
        "at_scale": grouping_at_scale(pictures, args.fingerprints),
        "report_at_scale": None if args.no_store else report_at_scale(pictures, args.fingerprints),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
    }
    print(f"{quality['pictures']:,} generated pictures ({args.originals} originals with 23 copies and 3 "
          f"look-alikes each): precision {quality['precision']:.4f}, recall {quality['recall']:.4f}, "
          f"{quality['lookalikes_grouped']} look-alike(s) grouped")
    print(f"{'transformation (copies: largest, look-alikes: smallest)':58s} {'distance':>9s} {'pHash bits':>10s} "
          f"{'wrong':>6s}")
    for what, row in result["by_transformation"].items():
        print(f"{what:58s} {row['distance']:9.3f} {row['phash_bits']:10d} {row['decided_wrong']:6d}")
    lookup = result["lookup"]
    print(f"lookup: {lookup['copies_found']} copies found through the keys, {lookup['copies_missed']} missed; "
          f"another picture a candidate for {lookup['other_pictures_hit']:.4%} of lookups")
    for name, value in result["cpu_ms"].items():
        print(f"  {name:58s} {value:8.2f} CPU-ms")
    scale = result["at_scale"]
    print(f"group {scale['fingerprints']:,} fingerprints: {scale['group_seconds']:.1f} s "
          f"({scale['group_cpu_seconds']:.1f} CPU-s), {scale['candidate_pairs']:,} candidate pairs, "
          f"{scale['groups']:,} groups")
    report = result["report_at_scale"]
    if report is not None:
        print(f"findimage duplicates over {report['documents']:,} documents (embedded store): "
              f"{report['duplicates_seconds']:.1f} s ({report['duplicates_cpu_seconds']:.1f} CPU-s), "
              f"{report['groups']:,} groups; the store written in {report['store_written_seconds']:.0f} s")
    out = save_result("duplicates", result)
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

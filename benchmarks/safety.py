"""What the safety guards cost and save, each against its baseline in the same run.

    .venv/bin/python -m benchmarks.safety [--files 100000] [--out benchmarks/results]

1. An unchanged `findimage index` over an archive of `--files` small JPEGs plus 5 broken files, timed
   as a user sees it (the whole command, start-up included). Baseline: the same pass without the
   remembered failures (what every pass cost before: the 5 files re-read, the image model loaded).
2. Peak RSS of a bot-like process (both full-size models loaded) while four query images are decoded
   at once: four 12,000 x 12,000 PNGs (refused from the header), and four 39.6-MP PNGs (just under the
   query limit) with the decode bound (2 at a time) and, as the baseline, without it (4 at a time).
3. Decode bombs under the pixel limit (`--bombs` runs only this): two 2.1 MB progressive grey JPEGs of
   32768 x 32768 and two ~1 MB TIFFs whose one deflate tile is 32768 x 32768, posted at once to a
   bot-like process, with the decode budget and, as the baseline, with the previous decoder (pixel
   limit on the drafted size only); and the same four files in an archive, indexed by `findimage index`
   (peak RSS of the whole command, and what it reports).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(models: dict, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", FINDIMAGE_IMAGE_MODEL=str(models["image"]),
               FINDIMAGE_TEXT_MODEL=str(models["text"]), **{k: str(v) for k, v in settings.items()})
    return env


def _timed_index(env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "findimage_cli", "-v", "index"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"findimage index failed: {proc.stderr[-2000:]}")
    return seconds, proc.stdout.strip() + ("  [model loaded]" if "loaded model" in proc.stderr else "")


def unchanged_pass(models: dict, files: int, work: Path) -> dict:
    from benchmarks.run import archive_of_small_files

    archive = archive_of_small_files(files)
    bad = archive / "zz-broken"
    shutil.rmtree(bad, ignore_errors=True)
    data = work / "data-unchanged"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "benchmarks.workers", "build",
                    json.dumps({"data_dir": str(data), "archive": str(archive), "seed": 1,
                                "model": str(models["image"])})],
                   env=_env(models), cwd=ROOT, check=True, capture_output=True)
    bad.mkdir()
    for i in range(5):
        (bad / f"broken-{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG " * (i + 1))
    try:
        env = _env(models, FINDIMAGE_ARCHIVE=archive, FINDIMAGE_DATA_DIR=data)
        baseline = []
        for _ in range(2):  # without remembered failures: each pass re-reads them and loads the model
            (data / "indexer-state.json").unlink(missing_ok=True)
            baseline.append(_timed_index(env))
        remembered = [_timed_index(env) for _ in range(3)]
    finally:
        shutil.rmtree(bad, ignore_errors=True)
    best_base, best = min(s for s, _ in baseline), min(s for s, _ in remembered)
    return {"files": files + 5, "baseline_seconds": [round(s, 2) for s, _ in baseline],
            "seconds": [round(s, 2) for s, _ in remembered], "baseline_line": baseline[-1][1],
            "line": remembered[-1][1], "ratio": round(best_base / best, 2)}


# ---- query image memory (each scenario in a fresh process: peak RSS only grows) ----------------------
def _png(width: int, height: int, mode: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode != "1" else 0).save(out, "PNG")
    return out.getvalue()


def query_memory_worker(args: dict) -> dict:
    import threading

    from benchmarks.workers import memory
    from findimage import search
    from findimage.config import load_settings
    from findimage.imaging import ImageError

    if args["decodes"] != search.QUERY_DECODES:
        search.QUERY_DECODES = args["decodes"]
    settings = load_settings(env_file=None)
    searcher = search.Searcher(settings)
    searcher.warm_up()
    idle = memory()
    data = Path(args["png"]).read_bytes()
    barrier = threading.Barrier(4)
    outcomes = []

    def post():
        barrier.wait()
        try:
            searcher.by_image_bytes(data, 5)
            outcomes.append("answered")
        except ImageError as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"png_kb": round(len(data) / 1024), "idle_rss_mb": idle["rss_mb"], **memory(),
            "outcomes": sorted(set(outcomes))}


def query_memory(models: dict, work: Path) -> dict:
    data = work / "data-query-memory"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "benchmarks.workers", "build",
                    json.dumps({"data_dir": str(data), "count": 1000, "seed": 2, "model": str(models["image"])})],
                   env=_env(models), cwd=ROOT, check=True, capture_output=True)
    scenarios = {"12k_x_12k_png": ([12_000, 12_000], "1", 2), "39.6mp_png_bounded": ([6000, 6600], "RGB", 2),
                 "39.6mp_png_unbounded": ([6000, 6600], "RGB", 4)}
    results = {}
    for name, (size, mode, decodes) in scenarios.items():
        png = work / f"{name}.png"  # made here: making it in the worker would count towards its peak
        png.write_bytes(_png(*size, mode))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.safety", "--worker",
                               json.dumps({"png": str(png), "decodes": decodes})],
                              env=_env(models, FINDIMAGE_DATA_DIR=data, FINDIMAGE_ARCHIVE=work / "no-archive"),
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {name}: {results[name]}", flush=True)
    return results


BOMBS = {"progressive-a.jpg": "jpeg", "progressive-b.jpg": "jpeg", "tile-a.tif": "tiff", "tile-b.tif": "tiff"}


def _make_bombs(folder: Path) -> dict[str, Path]:
    """The real files (they decode for real without a guard): made once, in a process of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, tiff = folder / "progressive.jpg", folder / "tile.tif"
    if not jpeg.exists() or not tiff.exists():
        code = ("import sys; sys.path.insert(0, 'tests/support'); from pathlib import Path; "
                "import hostile_images as h; "
                f"Path({str(jpeg)!r}).write_bytes(h.real_progressive_jpeg(32768, 32768)); "
                f"Path({str(tiff)!r}).write_bytes(h.tiled_tiff(64, 64, (32768, 32768), h.zero_tile((32768, 32768))))")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return {name: jpeg if kind == "jpeg" else tiff for name, kind in BOMBS.items()}


def _previous_decoder(data: bytes, min_side: int = 448, max_pixels: int | None = None, budget: int | None = None):
    """What prepare_bytes did before the decode budget: the pixel limit on the drafted size only."""
    from PIL import Image

    from findimage import imaging
    from findimage.config import DecodeLimits

    image = Image.open(io.BytesIO(data), formats=imaging.FORMATS)
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", imaging._draft_size(image.size, min_side))
    imaging._check_size(image.size, max_pixels or DecodeLimits.declared().max_pixels)
    image.load()
    return imaging.Prepared(imaging._to_rgb(image), *image.size)


def bomb_worker(args: dict) -> dict:
    import threading

    from benchmarks.workers import memory
    from findimage import search
    from findimage.config import load_settings
    from findimage.imaging import ImageError

    if args["previous"]:
        search.prepare_bytes = _previous_decoder
    settings = load_settings(env_file=None)
    searcher = search.Searcher(settings)
    searcher.warm_up()
    idle = memory()
    files = {name: Path(path).read_bytes() for name, path in args["files"].items()}
    barrier = threading.Barrier(len(files))
    outcomes: dict[str, str] = {}

    def post(name: str, data: bytes):
        barrier.wait()
        try:
            searcher.by_image_bytes(data, 5)
            outcomes[name] = "answered"
        except ImageError as exc:
            outcomes[name] = f"refused: {exc}"

    threads = [threading.Thread(target=post, args=item) for item in files.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = memory()
    return {"file_mb": {n: round(len(d) / 2**20, 2) for n, d in files.items()}, "idle_rss_mb": idle["rss_mb"],
            "peak_rss_mb": after["peak_rss_mb"], "peak_over_idle_mb": round(after["peak_rss_mb"] - idle["rss_mb"], 1),
            "outcomes": outcomes}


def bombs(models: dict, work: Path) -> dict:
    files = _make_bombs(ROOT / "benchmarks" / "results" / "bombs")
    data = work / "data-bombs"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "benchmarks.workers", "build",
                    json.dumps({"data_dir": str(data), "count": 1000, "seed": 2, "model": str(models["image"])})],
                   env=_env(models), cwd=ROOT, check=True, capture_output=True)
    results = {}
    for name, previous in (("bot_with_budget", False), ("bot_previous_decoder", True)):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.safety", "--bomb-worker",
                               json.dumps({"files": {n: str(p) for n, p in files.items()}, "previous": previous})],
                              env=_env(models, FINDIMAGE_DATA_DIR=data, FINDIMAGE_ARCHIVE=work / "no-archive"),
                              cwd=ROOT, capture_output=True, text=True)
        results[name] = (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0
                         else {"crashed": proc.returncode, "stderr": proc.stderr[-500:]})
        print(f"  {name}: {results[name]}", flush=True)
    archive = work / "bomb-archive"
    archive.mkdir()
    for name, path in files.items():
        shutil.copy(path, archive / name)
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from photos import save_photo

    for i in range(4):
        save_photo(archive / f"photo-{i}.jpg", seed=i)
    code = ("import resource, sys; from findimage_cli import main; rc = main(['index']); "
            "print('peak_rss_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=_env(models, FINDIMAGE_DATA_DIR=work / "data-bomb-index", FINDIMAGE_ARCHIVE=archive))
    peak = [float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_mb")]
    results["indexer_with_budget"] = {"exit": proc.returncode, "summary": proc.stdout.strip(),
                                      "failed": [f for f in proc.stderr.splitlines() if f.startswith("failed:")],
                                      "peak_rss_mb": round(peak[0], 1) if peak else None}
    print(f"  indexer_with_budget: {results['indexer_with_budget']}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--bombs", action="store_true", help="only the decode bombs (part 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bomb-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(query_memory_worker(json.loads(args.worker))))
        return 0
    if args.bomb_worker:
        print(json.dumps(bomb_worker(json.loads(args.bomb_worker))))
        return 0
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_test_models import ensure_models

    models = ensure_models("full")
    work = Path(tempfile.mkdtemp(prefix="findimage-safety-"))
    result: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count()}
    try:
        if not args.bombs:
            print("== unchanged pass with 5 known bad files", flush=True)
            result["unchanged_pass"] = unchanged_pass(models, args.files, work)
            print(f"  {json.dumps(result['unchanged_pass'])}", flush=True)
            print("== peak RSS, four query images at once", flush=True)
            result["query_memory"] = query_memory(models, work)
        print("== decode bombs under the pixel limit, four at once", flush=True)
        result["bombs"] = bombs(models, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out) / f"safety-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

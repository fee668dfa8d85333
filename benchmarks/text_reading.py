#!/usr/bin/env python3
"""Text reading: the cheap pipeline (`findimage.models.text_reader.TextReader`) against RapidOCR's own default
pipeline, on one mixed set of rendered pictures, in one run.

    .venv/bin/python -m benchmarks.text_reading              # ~5 min on 2 cores
    .venv/bin/python -m benchmarks.text_reading --rounds 3 --threads 2

The set (tests/support/rendered_text.py `mixed_set`): photos without text and photos with a street sign
(12 MP and 1600x1200 JPEGs), screenshots (1280x800 to 2560x1440), slides (1920x1080), and photos of a
printed page with small letters (1% and 1.5% of the long side), where the cheap pipeline's probe is
weakest. Both pipelines run with the same onnxruntime threads, the same PP-OCRv6 models, in this process,
alternating picture by picture
(which goes first alternates too) after a warm-up; each picture's best round counts. CPU time is the
process's (`time.process_time`), wall time beside it. Recognised text is checked against what was drawn:
word recall (the words of `text_reader.words`) and character error rate (edit distance over the lines
joined, case and accents kept; lines without a letter or digit, such as bullets, left out). Peak RSS
comes from one fresh process per pipeline reading the set once.
The project's image embedder (the full-size random-weight CLIP of scripts/make_test_models.py, as in
benchmarks/run.py: same compute as clip-ViT-B-32) embeds the same pictures for the reading/embedding
cost ratio. Writes benchmarks/results/text-reading-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make `benchmarks` and the project importable
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from benchmarks.run import CpuMeter, _load_script  # noqa: E402
from findimage.models.text_reader import TextReader, Tuning, words  # noqa: E402

KINDS = ("photo", "sign", "screenshot", "slide", "page")
LABEL = {"photo": "photo without text", "sign": "photo with a sign", "screenshot": "screenshot", "slide": "slide",
         "page": "photo of a page"}


def rendered_text():
    spec = importlib.util.spec_from_file_location("rendered_text", ROOT / "tests" / "support" / "rendered_text.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["rendered_text"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Default:
    """RapidOCR's own pipeline at its defaults (config.yaml: detection at up to 2000 px, the angle
    classifier, text score 0.5), with the same threads and quiet logging."""

    def __init__(self, threads: int):
        from rapidocr import RapidOCR

        params = {"Global.log_level": "error"}
        if threads:
            params.update({"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                           "EngineConfig.onnxruntime.inter_op_num_threads": threads})
        self.engine = RapidOCR(params=params)

    def read(self, image: Image.Image) -> list[str]:
        return list(getattr(self.engine(image), "txts", None) or ())


class Cheap:
    def __init__(self, threads: int):
        self.reader = TextReader(threads=threads)
        self.reader.load()

    def read(self, image: Image.Image) -> list[str]:
        return [line.text for line in self.reader.read(image)]


PIPELINES = {"cheap": Cheap, "default": Default}


def timed(fn, *args):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn(*args)
    return result, 1000 * (time.process_time() - cpu), 1000 * (time.perf_counter() - wall)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def accuracy(drawn: tuple[str, ...], read: list[str]) -> dict:
    """Words found and character errors; lines without a letter or digit (a bullet) are not text."""
    read = [line for line in read if any(c.isalnum() for c in line)]
    truth, got = Counter(words(" ".join(drawn))), Counter(words(" ".join(read)))
    expected, seen = " ".join(" ".join(drawn).split()), " ".join(" ".join(read).split())
    return {"words": sum(truth.values()), "found": sum(min(n, got[w]) for w, n in truth.items()),
            "chars": len(expected), "errors": edit_distance(expected, seen)}


def peak_rss(pipeline: str, folder: Path, threads: int) -> dict:
    """A fresh process reads every picture of the set once with one pipeline; its peak RSS."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.text_reading", "--worker", pipeline, str(folder),
                           "--threads", str(threads)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"the {pipeline} worker failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(pipeline: str, folder: Path, threads: int) -> None:
    reader = PIPELINES[pipeline](threads)
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            reader.read(image.convert("RGB"))
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(json.dumps({"peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}))


def embedding_cost(pictures, threads: int, rounds: int) -> dict:
    """CPU-ms per picture to embed the set with the project's image embedder (shrink + embed, batched
    like the indexer), fp32 and int8."""
    from findimage.models.clip import SentenceTransformerEmbedder

    model = _load_script("make_test_models").ensure_models("full")["image"]
    out = {}
    for quantize in ("off", "int8"):
        embedder = SentenceTransformerEmbedder(str(model), quantize=quantize, threads=threads)
        embedder.load()
        embedder.embed_images([embedder.shrink(p.image) for p in pictures[:2]])  # warm-up

        def embed_all(embedder: SentenceTransformerEmbedder = embedder) -> object:
            return embedder.embed_images([embedder.shrink(p.image) for p in pictures])

        best = min(timed(embed_all)[1] for _ in range(rounds))
        out["fp32" if quantize == "off" else "int8"] = round(best / len(pictures), 1)
    return out


def first_pass(copies: int) -> dict:
    """`findimage index` as a user runs it (the whole command, the full-size CLIP stand-in) over an archive
    of the mixed set, `copies` times with each picture's pixels nudged (distinct content), first with
    FINDIMAGE_OCR=off, then on over a fresh data folder; then an ordinary pass that reads the text into
    the index made with reading off (nothing embedded again)."""
    models = _load_script("make_test_models").ensure_models("full")
    work = Path(tempfile.mkdtemp(prefix="findimage-text-first-pass-"))
    archive = work / "archive"
    archive.mkdir()
    pictures = rendered_text().mixed_set()
    for copy in range(copies):
        for i, p in enumerate(pictures):
            image = p.image.copy()
            image.putpixel((0, 0), (copy % 256, i % 256, 7))  # another content hash, the same picture
            image.save(archive / f"{copy:02d}-{i:02d}-{p.kind}.png" if p.kind in ("screenshot", "slide")
                       else archive / f"{copy:02d}-{i:02d}-{p.kind}.jpg", quality=92)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTICSEARCH_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", FINDIMAGE_ARCHIVE=str(archive),
               FINDIMAGE_IMAGE_MODEL=str(models["image"]), FINDIMAGE_TEXT_MODEL=str(models["text"]))

    def index(data: str, ocr: str) -> dict:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "findimage_cli", "index"], cwd=ROOT, capture_output=True,
                              text=True, env={**env, "FINDIMAGE_DATA_DIR": str(work / data), "FINDIMAGE_OCR": ocr})
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return {"seconds": round(time.perf_counter() - started, 1), "summary": done.stdout.strip()}

    result = {"images": copies * len(pictures), "without_reading": index("off", "off"),
              "with_reading": index("on", "on"), "reading_added_later": index("off", "on")}
    for name in ("without_reading", "with_reading", "reading_added_later"):
        print(f"  {name}: {result[name]['seconds']} s: {result[name]['summary']}", flush=True)
    return result


def encoded(picture) -> bytes:
    """The picture as an archive file: a photo as a JPEG, a screen as a PNG."""
    import io

    out = io.BytesIO()
    if picture.kind in ("screenshot", "slide"):
        picture.image.save(out, "PNG", compress_level=1)
    else:
        picture.image.save(out, "JPEG", quality=92)
    return out.getvalue()


def page_set(seeds: int = 1) -> list:
    """Photos of a printed page with letters from 0.8% to 3% of the long side, at 12 MP and 1600x1200, each
    with `seeds` different backgrounds."""
    rt = rendered_text()
    kinds = [(size, share) for _ in range(seeds) for size in ((4032, 3024), (1600, 1200))
             for share in (0.008, 0.01, 0.0125, 0.015, 0.02, 0.03)]
    return [rt.page_photo(size, max(8, round(share * max(size))), seed=600 + i)
            for i, (size, share) in enumerate(kinds)]


def probes(candidates: list[tuple[int, ...]], rounds: int, pages: int) -> dict:
    """Each candidate probe (sizes, one or two passes) read as the indexer reads now: the photo probed on the
    small copy of the pixels decoded for its embedding (the copy is the embedding's work: not counted), the
    file decoded again (READ_MIN_SIDE) only where the reader asks; against the reading before (the file decoded
    at READ_MIN_SIDE, then read with the 320 + 200 px probes). Candidates alternate picture by picture; each
    picture's best round counts. Also: what a picture costs when no copy came with it (the pass's last stage
    over an existing index: a small decode first)."""
    from findimage.imaging import prepare_bytes
    from findimage.models.reader_process import PROBE_DRAFT_SIDE, READ_MIN_SIDE
    from findimage.models.text_reader import probe_copy

    pictures = rendered_text().mixed_set() + (page_set(pages) if pages else [])
    files = [encoded(p) for p in pictures]
    readers = {",".join(map(str, c)): TextReader(threads=1, tuning=Tuning(probe_sides=c)) for c in candidates}
    before = TextReader(threads=1, tuning=Tuning(probe_sides=(320, 200)))
    for reader in [*readers.values(), before]:
        reader.load()
        reader.read(pictures[0].image)  # warm-up

    def with_copy(reader: TextReader, data: bytes, side: int) -> tuple[list[str], float, int]:
        asked = []
        first = prepare_bytes(data, PROBE_DRAFT_SIDE)
        copy, size = probe_copy(first.image, side), (first.width, first.height)

        def whole():
            asked.append(1)
            return prepare_bytes(data, READ_MIN_SIDE).image

        cpu = time.process_time()
        lines = reader.read(copy, whole, size)
        return [line.text for line in lines], round(1000 * (time.process_time() - cpu), 1), len(asked)

    rows = []
    for i, (p, data) in enumerate(zip(pictures, files, strict=True)):
        row = {"kind": p.kind, "size": list(p.image.size), "drawn": list(p.lines), "runs": {}}
        names = list(readers) + ["before"]
        best: dict[str, dict] = {}
        for r in range(rounds):
            for name in names[(i + r) % len(names):] + names[:(i + r) % len(names)]:
                if name == "before":
                    cpu = time.process_time()
                    read = [line.text for line in before.read(prepare_bytes(data, READ_MIN_SIDE).image)]
                    ms, decoded = round(1000 * (time.process_time() - cpu), 1), 1
                else:
                    candidate = readers[name]
                    read, ms, decoded = with_copy(candidate, data, max(candidate.tuning.probe_sides))
                if name not in best or ms < best[name]["cpu_ms"]:
                    best[name] = {"cpu_ms": ms, "decoded_again": decoded, "read": read,
                                  **(accuracy(p.lines, read) if p.lines else {})}
        for name in readers:  # without a copy: the small decode is the reading's own
            cpu = time.process_time()
            first = prepare_bytes(data, PROBE_DRAFT_SIDE)
            probe_copy(first.image, max(readers[name].tuning.probe_sides))
            best[name]["small_decode_ms"] = round(1000 * (time.process_time() - cpu), 1)
        row["runs"] = best
        rows.append(row)
        print(f"  {i + 1}/{len(pictures)} {p.kind} {p.image.size[0]}x{p.image.size[1]}: " + ", ".join(
            f"{n} {b['cpu_ms']:.0f} ms" + (f" {100 * b['found'] / b['words']:.0f}%" if p.lines else "")
            for n, b in best.items()), flush=True)
    summary: dict = {}
    groups = {kind: [r for r in rows if r["kind"] == kind] for kind in KINDS}
    for name in [*readers, "before"]:
        entry = {}
        for kind, group in groups.items():
            if not group:
                continue
            runs = [g["runs"][name] for g in group]
            e = {"cpu_ms": round(sum(x["cpu_ms"] for x in runs) / len(runs), 1),
                 "decoded_again": sum(x["decoded_again"] for x in runs)}
            if name != "before":
                e["without_copy_cpu_ms"] = round(e["cpu_ms"] + sum(x["small_decode_ms"] for x in runs) / len(runs), 1)
            if kind != "photo":
                e["word_recall"] = round(sum(x["found"] for x in runs) / sum(x["words"] for x in runs), 4)
                e["pictures_with_every_word"] = sum(x["found"] == x["words"] for x in runs)
            entry[kind] = e
        summary[name] = entry
    return {"pictures": len(pictures), "summary": summary, "rows": rows}


def children(photos: int, rounds: int, baseline: str | None) -> dict:
    """What reading a photo without text costs in the indexer: a reader child's CPU per 12-MP phone photo (the
    photos benchmarks/run.py indexes), each handed over with the small copy of its embedding's decode
    (benchmarks/workers.py `reader`). This code and, with `baseline`, the code in that folder, each in a
    process of its own, alternating; each code's best round counts."""
    from benchmarks import corpus

    folder = corpus.photo_corpus("phone", (4032, 3024), photos, exif=True)
    codes = {"this code": ROOT, **({"the code before": Path(baseline)} if baseline else {})}
    start = f"import runpy; runpy.run_path({str(ROOT / 'benchmarks' / 'workers.py')!r}, run_name='__main__')"
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for r in range(rounds):
        for name in list(codes)[r % len(codes):] + list(codes)[:r % len(codes)]:
            env = {**os.environ, "PYTHONPATH": str(codes[name]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            proc = subprocess.run([sys.executable, "-c", start, "reader",
                                   json.dumps({"folder": str(folder), "photos": photos})],
                                  cwd=codes[name], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                raise RuntimeError(f"the reader measurement of {name} failed (exit {proc.returncode})")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1}, {name}: {runs[name][-1]['child_cpu_ms_per_photo']:.1f} CPU-ms per photo "
                  f"in the child", flush=True)
    best = {name: min(found, key=lambda x: x["child_cpu_ms_per_photo"]) for name, found in runs.items()}
    return {"photos": photos, "rounds": runs, "best": best}


def report_probes(result: dict) -> None:
    print(f"\n{'probes':<10} " + " ".join(f"{LABEL[k][:18]:>28}" for k in KINDS))
    for name, entry in result["summary"].items():
        cells = []
        for kind in KINDS:
            e = entry.get(kind)
            if e is None:
                cells.append(f"{'':>28}")
                continue
            recall = f" {100 * e['word_recall']:5.1f}%" if "word_recall" in e else ""
            cells.append(f"{e['cpu_ms']:>7.0f} ms, {e['decoded_again']:>2} decoded{recall}".rjust(28))
        print(f"{name:<10} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the set; each picture's best counts")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime (and torch) threads, both pipelines")
    parser.add_argument("--no-embed", action="store_true", help="leave out the embedding cost")
    parser.add_argument("--worker", nargs=2, metavar=("PIPELINE", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--probes", nargs="+", metavar="SIDES",
                        help="only compare candidate probes (e.g. 320,200 256,160 256), as the indexer reads now")
    parser.add_argument("--pages", type=int, default=0, metavar="N",
                        help="with --probes: also N x 12 pages, letters 0.8-3%% of the long side")
    parser.add_argument("--children", type=int, metavar="PHOTOS",
                        help="only measure a reader child's CPU per 12-MP phone photo without text, as the indexer "
                             "hands them over")
    parser.add_argument("--baseline", metavar="DIR", help="with --children: also the code in DIR (the code before)")
    parser.add_argument("--first-pass", type=int, metavar="COPIES",
                        help="only time `findimage index` over COPIES x the set, without and with reading text")
    args = parser.parse_args(argv)
    if args.first_pass:
        result = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
                  "first_pass": first_pass(args.first_pass)}
        out = ROOT / "benchmarks" / "results" / f"text-first-pass-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return 0
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), args.threads)
        return 0
    if args.children:
        meter = CpuMeter()
        result = children(args.children, args.rounds, args.baseline)
        result.update(when=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join(sys.argv),
                      other_cpu_cores=round(meter.others(), 2), load_average=os.getloadavg())
        for name, best in result["best"].items():
            print(f"{name}: {best['child_cpu_ms_per_photo']:.1f} CPU-ms per photo in the reader child "
                  f"(+{best['parent_cpu_ms_per_photo']:.1f} handing over), {best['with_lines']} of {best['photos']} "
                  "with lines")
        print(f"other processes used {result['other_cpu_cores']:.2f} cores meanwhile; load average "
              + " ".join(f"{v:.2f}" for v in result["load_average"]))
        out = ROOT / "benchmarks" / "results" / f"text-children-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"results: {out.relative_to(ROOT)}")
        return 0
    if args.probes:
        meter = CpuMeter()
        result = probes([tuple(int(v) for v in c.split(",")) for c in args.probes], args.rounds, args.pages)
        result.update(when=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join(sys.argv),
                      other_cpu_cores=round(meter.others(), 2), load_average=os.getloadavg())
        report_probes(result)
        print(f"other processes used {result['other_cpu_cores']:.2f} cores meanwhile; load average "
              + " ".join(f"{v:.2f}" for v in result["load_average"]))
        out = ROOT / "benchmarks" / "results" / f"text-probes-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(f"results: {out.relative_to(ROOT)}")
        return 0

    started = time.time()
    pictures = rendered_text().mixed_set()
    print(f"{len(pictures)} pictures: " + ", ".join(f"{sum(p.kind == k for p in pictures)} {LABEL[k]}" for k in KINDS))
    readers = {name: make(args.threads) for name, make in PIPELINES.items()}
    for p in (pictures[0], pictures[8]):  # warm-up: a photo and a screenshot through both
        for reader in readers.values():
            reader.read(p.image)

    meter = CpuMeter()
    runs = [{"cheap": [], "default": []} for _ in pictures]
    texts: list[dict] = [{} for _ in pictures]
    for r in range(args.rounds):
        for i, p in enumerate(pictures):
            order = ("cheap", "default") if (i + r) % 2 == 0 else ("default", "cheap")
            for name in order:
                read, cpu, wall = timed(readers[name].read, p.image)
                runs[i][name].append((cpu, wall))
                texts[i].setdefault(name, read)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    others = meter.others()

    per_picture = []
    for p, run, read in zip(pictures, runs, texts, strict=True):
        row = {"kind": p.kind, "size": list(p.image.size), "drawn": list(p.lines)}
        for name in PIPELINES:
            row[name] = {"cpu_ms": round(min(c for c, _ in run[name]), 1),
                         "wall_ms": round(min(w for _, w in run[name]), 1),
                         "read": read[name], **(accuracy(p.lines, read[name]) if p.lines else {})}
        per_picture.append(row)

    summary: dict = {"kinds": {}}
    for kind in KINDS:
        rows = [r for r in per_picture if r["kind"] == kind]
        entry = {"pictures": len(rows)}
        for name in PIPELINES:
            entry[name] = {"cpu_ms": round(sum(r[name]["cpu_ms"] for r in rows) / len(rows), 1),
                           "wall_ms": round(sum(r[name]["wall_ms"] for r in rows) / len(rows), 1)}
            if kind != "photo":
                found, total = sum(r[name]["found"] for r in rows), sum(r[name]["words"] for r in rows)
                errors, chars = sum(r[name]["errors"] for r in rows), sum(r[name]["chars"] for r in rows)
                entry[name].update(word_recall=round(found / total, 4), cer=round(errors / chars, 4))
        entry["ratio"] = round(entry["default"]["cpu_ms"] / entry["cheap"]["cpu_ms"], 2)
        summary["kinds"][kind] = entry
    total = {name: sum(r[name]["cpu_ms"] for r in per_picture) for name in PIPELINES}
    summary["total_cpu_ms"] = {k: round(v) for k, v in total.items()}
    summary["total_ratio"] = round(total["default"] / total["cheap"], 2)
    photos = summary["kinds"]["photo"]
    summary["no_text_photo_cost"] = round(photos["cheap"]["cpu_ms"] / photos["default"]["cpu_ms"], 4)
    summary["cheap_cpu_ms_per_picture"] = round(total["cheap"] / len(pictures), 1)
    summary["default_cpu_ms_per_picture"] = round(total["default"] / len(pictures), 1)
    summary["other_cpu_cores"] = round(others, 2)

    with tempfile.TemporaryDirectory() as folder:
        for i, p in enumerate(pictures):
            p.image.save(Path(folder) / f"{i:02d}-{p.kind}.png", compress_level=1)
        summary["peak_rss_mb"] = {name: peak_rss(name, Path(folder), args.threads)["peak_rss_mb"] for name in PIPELINES}
    if not args.no_embed:
        embed = embedding_cost(pictures, args.threads, args.rounds)
        summary["embed_cpu_ms_per_picture"] = embed
        summary["reading_vs_embedding"] = {
            f"{name}_vs_{q}": round(summary[f"{name}_cpu_ms_per_picture"] / ms, 1)
            for name in PIPELINES for q, ms in embed.items()}

    report(summary)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor(),
               **{name: version(name) for name in ("rapidocr", "onnxruntime", "torch")}}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"text-reading-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1), "command": " ".join(sys.argv), "machine": machine,
        "threads": args.threads, "rounds": args.rounds, "cheap_settings": vars_of(readers["cheap"].reader),
        "summary": summary, "pictures": per_picture}, indent=2, ensure_ascii=False))
    print(f"results: {path.relative_to(ROOT)}")
    return 0


def vars_of(reader: TextReader) -> dict:
    return {"threads": reader.threads, **dataclasses.asdict(reader.tuning)}


def report(s: dict) -> None:
    print(f"\n{'kind':<20} {'n':>2} {'default CPU-ms':>15} {'cheap CPU-ms':>13} {'ratio':>6}  "
          f"{'default wall':>12} {'cheap wall':>10}  recall (default/cheap)  CER (default/cheap)")
    for kind, e in s["kinds"].items():
        d, c = e["default"], e["cheap"]
        quality = (f"  {d['word_recall']:.3f} / {c['word_recall']:.3f}          {d['cer']:.4f} / {c['cer']:.4f}"
                   if "word_recall" in c else "")
        print(f"{LABEL[kind]:<20} {e['pictures']:>2} {d['cpu_ms']:>15.0f} {c['cpu_ms']:>13.0f} {e['ratio']:>5.1f}x  "
              f"{d['wall_ms']:>12.0f} {c['wall_ms']:>10.0f}{quality}")
    print(f"total CPU: default {s['total_cpu_ms']['default']} ms, cheap {s['total_cpu_ms']['cheap']} ms "
          f"= {s['total_ratio']:.2f}x (goal >= 3x)")
    print(f"photo without text: {100 * s['no_text_photo_cost']:.1f}% of the default's cost (goal <= 10%)")
    shots = s["kinds"]["screenshot"]["cheap"]
    print(f"screenshots, cheap: word recall {100 * shots['word_recall']:.1f}% (goal >= 97%), "
          f"CER {100 * shots['cer']:.2f}% (goal <= 2%)")
    print(f"peak RSS: default {s['peak_rss_mb']['default']:.0f} MB, cheap {s['peak_rss_mb']['cheap']:.0f} MB")
    if "embed_cpu_ms_per_picture" in s:
        e = s["embed_cpu_ms_per_picture"]
        print(f"embedding: {e['fp32']:.0f} CPU-ms/picture fp32, {e['int8']:.0f} int8; reading/embedding: "
              + ", ".join(f"{k.replace('_vs_', ' vs ')} {v:.1f}x" for k, v in s["reading_vs_embedding"].items()))
    print(f"other processes used {s['other_cpu_cores']:.2f} cores meanwhile")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What a forget costs on a remembered store of a few thousand images, each with a name, a title and
text read in it (5 lines of 8 words from a 20,000-word vocabulary).

    .venv/bin/python -m benchmarks.forget [--images 3000] [--files 20] [--es URL [--expunge-wait 35]]

Through the product's own code: `open_remembered` (what the bot opens: the embedded store erasing what it
deletes from its files, or Elasticsearch refreshing each deletion) and `Remembered.forget_file` /
`forget_channel`. The embedded store is measured twice in the same run, erasing and not (the cost of
leaving nothing in the files); a third of the images are in the channel forgotten. With --es, the same
on an Elasticsearch server (a scratch index, deleted afterwards), and what `_forcemerge?only_expunge_deletes`
would cost and reclaim right after the channel's forget (and, with --expunge-wait 35, once Elasticsearch's
retention lease has moved past the deletions). Printed and written to
benchmarks/results/forget-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks import save_result  # noqa: E402
from findimage.backends import open_remembered  # noqa: E402
from findimage.config import load_settings  # noqa: E402
from findimage.records import ImageDoc, Posted, ReadText, TextLine, posted_path  # noqa: E402
from findimage.remembered import Remembered  # noqa: E402
from findimage.stores.base import ChannelState  # noqa: E402
from findimage.stores.embedded.registry import EmbeddedRegistry  # noqa: E402
from findimage.stores.embedded.store import EmbeddedStore  # noqa: E402

MODEL = "bench"
FORGOTTEN, KEPT = "C0FORGET", "C0KEEP"
BOX = ((0, 0), (90, 0), (90, 12), (0, 12))
BATCH = 100  # postings written together (the bot writes one at a time; the forget is what is measured)


def postings(count: int) -> list[tuple[ImageDoc, Posted, ReadText]]:
    rng = np.random.default_rng(7)
    vocabulary = [f"{w}{i}" for i, w in enumerate(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 20_000))]
    made = []
    for i in range(count):
        channel = FORGOTTEN if i % 3 == 0 else KEPT
        file_id = f"F{i:07d}"
        title, name = " ".join(rng.choice(vocabulary, 3)), " ".join(rng.choice(vocabulary, 2)) + ".png"
        posted = Posted(channel, file_id, f"{1772704800 + i}.000100", "U0ANNA",
                        f"https://x.slack.com/files/U0ANNA/{file_id}", title)
        vector = rng.standard_normal(512).astype(np.float32)
        doc = ImageDoc(posted.image_id, name, posted_path(channel, file_id, f"{title}/{name}"),
                       vector / np.linalg.norm(vector), f"sha-{i}", 50_000, 1.0, 800, 600, time.time(), MODEL,
                       "2026-03-05T10:00:00", "slack")
        lines = tuple(TextLine(" ".join(rng.choice(vocabulary, 8)), BOX, 0.9) for _ in range(5))
        made.append((doc, posted, ReadText("read", lines)))
    return made


def fill(remembered: Remembered, made: list[tuple[ImageDoc, Posted, ReadText]]) -> float:
    started = time.perf_counter()
    for channel in (FORGOTTEN, KEPT):
        remembered.registry.save_channel(ChannelState(channel, "U0ANNA", time.time(), 0.0))
    for start in range(0, len(made), BATCH):
        chunk = made[start:start + BATCH]
        remembered.add([(doc, posted) for doc, posted, _ in chunk], MODEL)
        remembered.store.set_texts([(doc.image_id, doc.sha256, read) for doc, _, read in chunk])
    return time.perf_counter() - started


def forgets(remembered: Remembered, made: list[tuple[ImageDoc, Posted, ReadText]], files: int) -> dict:
    """`files` single files forgotten one by one (from the channel that stays), then the channel."""
    kept = [posted for _, posted, _ in made if posted.channel == KEPT][:files]
    each = []
    for posted in kept:
        started = time.perf_counter()
        assert remembered.forget_file(posted.file_id) == 1
        each.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    count = remembered.forget_channel(FORGOTTEN)
    channel_ms = (time.perf_counter() - started) * 1000
    return {"file_ms_median": round(statistics.median(each), 1), "file_ms_max": round(max(each), 1),
            "files": len(each), "channel_ms": round(channel_ms, 1), "channel_images": count}


def embedded(made: list, files: int, erase: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "remembered"
        settings = dataclasses.replace(load_settings(env_file=None), data_dir=Path(tmp), remember="on",
                                       elasticsearch_url=None)
        # The bot's store (open_remembered), or the same store deleting the ordinary way.
        remembered = open_remembered(settings) if erase else Remembered(EmbeddedStore(folder), EmbeddedRegistry(folder))
        assert remembered is not None
        try:
            fill_s = fill(remembered, made)
            remembered.store.checkpoint()  # a kNN snapshot there, as after a restart's checkpoint
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            result = forgets(remembered, made, files)
        finally:
            remembered.close()
    return {"store": "embedded", "erase_deleted": erase, "fill_s": round(fill_s, 1),
            "folder_mb": round(size_mb, 1), **result}


def elasticsearch(made: list, files: int, url: str, expunge_wait: float) -> dict:
    alias = f"bench-forget-{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(load_settings(env_file=None), elasticsearch_url=url, index_name=alias,
                                   remember="on")
    remembered = open_remembered(settings)
    assert remembered is not None
    client = remembered.store.client
    try:
        fill_s = fill(remembered, made)
        result = forgets(remembered, made, files)

        def segments() -> dict:
            rows = client.cat.segments(index=remembered.store.alias, format="json")
            return {"segments": len(rows), "docs": sum(int(r["docs.count"]) for r in rows),
                    "deleted_docs": sum(int(r["docs.deleted"]) for r in rows)}

        def expunge() -> dict:
            before = segments()
            started = time.perf_counter()
            client.options(request_timeout=600).indices.forcemerge(index=remembered.store.alias,
                                                                   only_expunge_deletes=True)
            return {"ms": round((time.perf_counter() - started) * 1000, 1), "before": before, "after": segments()}

        expunges = [expunge()]
        if expunge_wait > 0:  # once the shard's retention lease has moved past the deletions
            time.sleep(expunge_wait)
            expunges.append({"waited_s": expunge_wait, **expunge()})
        return {"store": "elasticsearch", "fill_s": round(fill_s, 1), **result, "expunges": expunges}
    finally:
        patient = client.options(request_timeout=300)  # deleting an index waits for its merges
        for index in patient.indices.get(index=f"{alias}-*", expand_wildcards="all"):
            patient.indices.delete(index=index, ignore_unavailable=True)
        remembered.close()  # and the client with it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--files", type=int, default=20, help="single files forgotten one by one")
    parser.add_argument("--es", metavar="URL", help="also on this Elasticsearch server (a scratch index)")
    parser.add_argument("--expunge-wait", type=float, default=0, metavar="S",
                        help="with --es: expunge the deleted documents again this many seconds later")
    args = parser.parse_args(argv)
    made = postings(args.images)
    runs = [embedded(made, args.files, erase=False), embedded(made, args.files, erase=True)]
    if args.es:
        runs.append(elasticsearch(made, args.files, args.es, args.expunge_wait))
    print(f"{args.images:,} remembered images, a third of them in the channel forgotten")
    print(f"{'store':<28} {'one file: median / max ms':>26} {'the channel (images): ms':>26}")
    for run in runs:
        label = run["store"] + (" (erasing)" if run.get("erase_deleted") else
                                " (ordinary deletes)" if run["store"] == "embedded" else "")
        print(f"{label:<28} {run['file_ms_median']:>15.1f} / {run['file_ms_max']:<8.1f} "
              f"{run['channel_ms']:>15.1f} ({run['channel_images']:,})")
        for expunge in run.get("expunges", []):
            when = f"{expunge['waited_s']:g} s later" if "waited_s" in expunge else "right after"
            print(f"  _forcemerge?only_expunge_deletes {when}: {expunge['ms']:.0f} ms; segments "
                  f"{expunge['before']} -> {expunge['after']}")
    out = save_result("forget", {"images": args.images, "runs": runs})
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Deletions in remembered channels while remembering is busy: how many the bot applies a second, and how
long one `file_deleted` takes until the image is gone, against the Slack emulator.

    .venv/bin/python -m benchmarks.lifecycle [--remembered 1000] [--flood 3000] [--models tiny|full]

The real bot (bot.web on a threaded HTTP server) remembers a channel holding `--remembered` postings
(written straight into its store with made-up vectors: deleting one costs the same as deleting a real
one). Baseline, in the same run: the bot idle. Then `--flood` messages with an image are posted, each kept
to be remembered (download, embed); while that backlog is worked through, the same number of deletions is
sent as in the baseline. For each phase: the deletions' rate (sent to applied, 6 senders at once), one
more deletion's time until its image is gone from the registry and the store (polled every 5 ms), and
the remembering backlog when the deletions were done. Printed and written to
benchmarks/results/lifecycle-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from bot_support import serve_bot  # noqa: E402
from photos import jpeg_bytes  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402

from benchmarks import save_result  # noqa: E402
from benchmarks.bot_latency import CHANNEL, load_models, make_settings  # noqa: E402
from findimage.records import ImageDoc, Posted, posted_path  # noqa: E402
from findimage.stores.base import LIFECYCLE, REMEMBER, ChannelState  # noqa: E402

SENDERS = 6


def remembered_postings(bot, count: int, prefix: str) -> list[Posted]:
    remembered = bot.searcher.remembered
    model = bot.searcher.image_embedder.model_id
    rng = np.random.default_rng(len(prefix))
    now = time.time()
    items = []
    for n in range(count):
        file_id = f"F{prefix}{n:06d}"
        posted = Posted(CHANNEL, file_id, f"{now:.6f}", "U0BOB", "", f"photo {n}.jpg")
        vector = rng.standard_normal(512).astype(np.float32)
        items.append((ImageDoc(posted.image_id, f"photo {n}.jpg", posted_path(CHANNEL, file_id, f"photo {n}.jpg"),
                               vector / np.linalg.norm(vector), f"sha-{file_id}", 1, now, 1, 1, now, model, None,
                               "slack"), posted))
    for start in range(0, count, 500):
        remembered.add(items[start:start + 500], model)
    return [posted for _, posted in items]


def deletions(emu, bot, postings: list[Posted]) -> dict:
    registry, store = bot.searcher.remembered.registry, bot.searcher.remembered.store
    *many, last = postings
    started = time.monotonic()
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(lambda p: emu.send_event(bot.events_url, {"type": "file_deleted", "file_id": p.file_id,
                                                                "event_ts": f"{time.time():.6f}"}), many))
    sent = time.monotonic() - started
    while registry.backlog().get(LIFECYCLE):
        time.sleep(0.005)
    applied = time.monotonic() - started
    assert not registry.posted([p.image_id for p in many]), "a deleted posting is still there"
    one = time.monotonic()
    emu.send_event(bot.events_url, {"type": "file_deleted", "file_id": last.file_id, "event_ts": f"{time.time():.6f}"})
    while registry.posted([last.image_id]) or store.get(last.image_id) is not None:
        time.sleep(0.005)
    return {"deletions": len(many), "sent_seconds": round(sent, 2), "applied_seconds": round(applied, 2),
            "applied_per_second": round(len(many) / applied, 1),
            "one_deletion_ms": round(1000 * (time.monotonic() - one), 1),
            "remember_backlog_after": registry.backlog().get(REMEMBER, 0)}


def run(remembered: int, flood: int, models: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as emu:
        settings = make_settings(emu, Path(tmp), load_models(models), photos=10)
        with serve_bot(settings) as bot:
            now = time.time()
            bot.searcher.remembered.registry.save_channel(ChannelState(CHANNEL, "U0ALICE", now, now, done=True))
            half = remembered // 2
            postings = remembered_postings(bot, 2 * half, "P")
            idle = deletions(emu, bot, postings[:half])

            photo = emu.add_file(jpeg_bytes(seed=7), "sprint board.jpg", user="U0BOB")
            started = time.monotonic()
            with ThreadPoolExecutor(SENDERS) as pool:
                list(pool.map(lambda _: emu.send_event(bot.events_url, emu.post_user_message_with_files(
                    CHANNEL, [photo], user="U0BOB")), range(flood)))
            flood_seconds = time.monotonic() - started
            backlog_before = bot.searcher.remembered.registry.backlog().get(REMEMBER, 0)
            busy = deletions(emu, bot, postings[half:])
            bot.wsgi.memory.stop()
        return {"models": models, "remembered": 2 * half, "flood_messages": flood,
                "flood_sent_seconds": round(flood_seconds, 2), "flood_kept_per_second": round(flood / flood_seconds, 1),
                "remember_backlog_before_deletions": backlog_before, "idle": idle, "busy": busy,
                "busy_vs_idle_rate": round(busy["applied_per_second"] / idle["applied_per_second"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remembered", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--models", choices=("tiny", "full"), default="tiny")
    args = parser.parse_args()
    result = run(args.remembered, args.flood, args.models)
    result["run_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(result, indent=2))
    out = save_result("lifecycle", result)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

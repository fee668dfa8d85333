#!/usr/bin/env python3
"""The backfill of a remembered channel with 10,000 messages (one image in ten), against the Slack emulator.

    .venv/bin/python -m benchmarks.backfill [--messages 10000] [--files-every 10] [--models full|tiny] [--speed 60]

The real bot (bot.web on a threaded HTTP server) is asked `/findimage remember` in a channel whose history
the emulator holds (`seed_history`: distinct 16x16 PNGs, so decoding costs little and the model and the
store are what is measured). Slack's Tier 3 limit for conversations.history (50 requests a minute) is
applied on the emulator's clock, sped up `--speed` times; the bot's pace (FINDIMAGE_HISTORY_PER_MINUTE,
default 40) is scaled by the same factor, so the run is the real schedule in fast motion: Slack minutes
are the schedule's, real seconds the work's. While it runs, a text command is sent every half second and
its ack timed (Slack gives an ack 3 s). Printed and written to benchmarks/results/backfill-<time>.json:
the real duration and the schedule's minutes, images per second, 429 answers, the process's peak memory
growth, and the acks' p50/p95/max.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from bot_support import serve_bot, with_settings  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402

from benchmarks import save_result  # noqa: E402
from benchmarks.bot_latency import CHANNEL, load_models, make_settings  # noqa: E402

TIER_3_PER_MINUTE = 50


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(messages: int, files_every: int, models: str, speed: float, pace: float, page: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as emu:
        settings = make_settings(emu, Path(tmp), load_models(models), photos=20)
        settings = with_settings(settings, history_per_minute=pace * speed, history_page=page)
        seeded = emu.seed_history(CHANNEL, messages, files_every=files_every, step=60.0)
        emu.clock_speed = speed
        emu.limit_rate("conversations.history", TIER_3_PER_MINUTE)
        acks: list[float] = []
        with serve_bot(settings) as bot:
            registry = bot.searcher.remembered.registry
            rss_before = peak_rss_mb()
            started = time.monotonic()
            emu.send_slash_command(bot.events_url, text="remember", channel_id=CHANNEL)
            done = threading.Event()

            def commands() -> None:
                n = 0
                while not done.is_set():
                    ack = emu.send_slash_command(bot.events_url, text="a red car", channel_id=f"C0Q{n:05d}")
                    acks.append(ack.elapsed)
                    n += 1
                    done.wait(0.5)

            asker = threading.Thread(target=commands, daemon=True)
            asker.start()
            while True:
                state = registry.channel(CHANNEL)
                if state is not None and state.done:
                    break
                time.sleep(0.2)
            seconds = time.monotonic() - started
            done.set()
            asker.join()
            remembered = len(registry.posted_in(CHANNEL))
            emu.wait_for(lambda: bot.work.pending == 0, 120, "the commands' answers")
        limited = len(emu.rate_limited_calls("conversations.history"))
        return {
            "messages": messages, "images_posted": len(seeded.file_ids), "images_remembered": remembered,
            "failed": state.failed, "pages": state.pages, "page_size": page, "pace_per_minute": pace,
            "tier_3_per_minute": TIER_3_PER_MINUTE, "clock_speed": speed, "models": models,
            # The pace's waits run `speed` times faster here, the downloads and the model do not: on real Slack
            # a backfill takes the longer of the pace's schedule and this run's time.
            "seconds_real": round(seconds, 2), "schedule_minutes_at_pace": round(state.pages / pace, 1),
            "non_marketplace_minutes": round(messages / 15, 1),  # 1 request of 15 messages a minute
            "images_per_real_second": round(remembered / seconds, 1),
            "responses_429": limited, "peak_rss_growth_mb": round(peak_rss_mb() - rss_before, 1),
            "command_acks": len(acks), "ack_p50_ms": round(1000 * statistics.median(acks), 1) if acks else None,
            "ack_p95_ms": round(1000 * percentile(acks, 0.95), 1), "ack_max_ms": round(1000 * max(acks, default=0), 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--files-every", type=int, default=10)
    parser.add_argument("--models", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--speed", type=float, default=60.0, help="emulated Slack seconds per real second")
    parser.add_argument("--pace", type=float, default=40.0, help="FINDIMAGE_HISTORY_PER_MINUTE (Slack minutes)")
    parser.add_argument("--page", type=int, default=200, help="FINDIMAGE_HISTORY_PAGE")
    args = parser.parse_args()
    result = run(args.messages, args.files_every, args.models, args.speed, args.pace, args.page)
    result["run_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(result, indent=2))
    out = save_result("backfill", result)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

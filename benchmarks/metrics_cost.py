#!/usr/bin/env python3
"""What the bot's metrics cost a text answer, against the Slack emulator.

    .venv/bin/python -m benchmarks.metrics_cost [--queries 30] [--models tiny|full]

The real bot (bot.web on a threaded HTTP server, the embedded store) answers `/findimage` text commands;
`answer` is the time from sending the command until the emulator has the finished upload. The commands
alternate between the bot as it runs (metrics on) and the same bot with every metric update replaced by
nothing (off: bot.metrics' series and its Slack error counter left out), so both see the same machine
load; the p50 of each and their difference are printed. Beside it, the metric updates of one text answer
timed alone (a request counted and timed, the queue gauge up and down, six Slack responses looked at),
where the difference is below what the answers' noise shows. Printed and written to
benchmarks/results/metrics-cost-<time>.json; the goal is at most +1 ms on the p50.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from bot_support import serve_bot  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from slack_sdk.http_retry.request import HttpRequest  # noqa: E402
from slack_sdk.http_retry.response import HttpResponse  # noqa: E402
from slack_sdk.http_retry.state import RetryState  # noqa: E402

from benchmarks import save_result  # noqa: E402
from benchmarks.bot_latency import load_models, make_settings, text_over_http  # noqa: E402
from bot import metrics  # noqa: E402
from findimage.observability import FixedLabels  # noqa: E402

GOAL_MS = 1.0
SLACK_CALLS_PER_ANSWER = 6  # upload URL, upload, complete, the buttons' message, and room for a check or two


class _Nothing:
    """A series whose updates do nothing: the bot as it would run without metrics."""

    def inc(self, *args) -> None: ...
    def dec(self, *args) -> None: ...
    def set(self, *args) -> None: ...
    def observe(self, *args) -> None: ...


class MetricsSwitch:
    """Turns every update of the bot's metrics off and on again, in this process."""

    def __init__(self, bot):
        self.labels = FixedLabels.labels
        self.handlers = bot.wsgi.routes.slack.app.client.retry_handlers  # Bolt copies them into each request's client
        self.counter = next(h for h in self.handlers if isinstance(h, metrics.SlackErrorCounter))

    def off(self) -> None:
        FixedLabels.labels = lambda self, **given: _Nothing()  # type: ignore[method-assign]
        if self.counter in self.handlers:
            self.handlers.remove(self.counter)

    def on(self) -> None:
        FixedLabels.labels = self.labels  # type: ignore[method-assign]
        if self.counter not in self.handlers:
            self.handlers.insert(0, self.counter)


def updates_of_one_answer(rounds: int = 20_000) -> float:
    """Microseconds the metric updates of one text answer take, timed alone."""
    counter = metrics.SlackErrorCounter()
    ok = HttpResponse(status_code=200, headers={}, body={"ok": True})
    request = HttpRequest(method="POST", url="https://slack.com/api/x", headers={})
    state = RetryState()
    started = time.perf_counter()
    for _ in range(rounds):
        answer = metrics.timed("command", lambda: "answered")
        metrics.ANSWERS_QUEUED.labels().inc()
        answer()
        metrics.ANSWERS_QUEUED.labels().dec()
        for _ in range(SLACK_CALLS_PER_ANSWER):
            counter.can_retry(state=state, request=request, response=ok)
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", choices=("full", "tiny"), default="tiny")
    parser.add_argument("--photos", type=int, default=30, help="archive size")
    parser.add_argument("--queries", type=int, default=30, help="text commands with metrics on, and as many off")
    args = parser.parse_args()

    models = load_models(args.models)
    answers: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as emu:
        settings = make_settings(emu, Path(tmp), models, args.photos)
        with serve_bot(settings) as bot:
            switch = MetricsSwitch(bot)
            for n in range(4):  # warm caches and connections; not measured
                text_over_http(emu, bot.events_url, 90_000 + n)
            try:
                for n in range(2 * args.queries):
                    mode = ("on", "off")[n % 2]
                    switch.on() if mode == "on" else switch.off()
                    answers[mode].append(text_over_http(emu, bot.events_url, n).answer * 1000)
            finally:
                switch.on()
    micro = updates_of_one_answer()
    p50 = {mode: float(np.percentile(values, 50)) for mode, values in answers.items()}
    result = {"models": args.models, "photos": args.photos, "queries_each": args.queries,
              "answer_p50_ms": p50, "answer_p95_ms": {m: float(np.percentile(v, 95)) for m, v in answers.items()},
              "p50_difference_ms": p50["on"] - p50["off"], "updates_per_answer_us": micro, "goal_ms": GOAL_MS}
    print(f"\nmetrics on a text answer, {args.models} models, {args.photos} photos, {args.queries} commands each "
          "(alternating)\n")
    print("| metrics | answer p50 (ms) | answer p95 (ms) |")
    print("|---------|-----------------|-----------------|")
    for mode in ("off", "on"):
        print(f"| {mode:<7} | {p50[mode]:>15.1f} | {result['answer_p95_ms'][mode]:>15.1f} |")
    print(f"\np50 difference (on - off): {result['p50_difference_ms']:+.1f} ms (goal: at most +{GOAL_MS:g} ms)")
    print(f"the metric updates of one answer, timed alone: {micro:.1f} µs")
    print(f"written to {save_result('metrics-cost', result).relative_to(ROOT)}")
    return 0 if micro / 1000 <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())

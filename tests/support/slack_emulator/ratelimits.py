"""Rate limits as Slack applies them (https://docs.slack.dev/apis/web-api/rate-limits), on a clock tests control.

Slack counts each app's calls per method and per workspace in minute windows ("Tier 3: 50+ per minute" is
conversations.history's tier); past the limit it answers HTTP 429 with ``Retry-After``, the seconds to wait.
The emulator keeps the calls of the last minute per limited method (a sliding window, an emulator choice) on its
own clock, ``now()``: real time times ``clock_speed``, plus whatever ``advance_clock`` added. A test sets
``emu.clock_speed = 60`` so that a minute of Slack's time passes in a real second; ``Retry-After`` is then given
in *real* seconds (the emulator's wait divided by the speed, rounded up, at least 1), so a client that sleeps
for it -- slack_sdk's ``RateLimitErrorRetryHandler`` sleeps ``Retry-After`` plus up to a second -- finds the
window free when it retries. At speed 1 both are Slack's plain seconds.

Non-Marketplace apps: "Effective May 29, 2025, all newly-created Slack apps that have not been approved for the
Slack Marketplace will be subject to new rate limits for the conversations.history and conversations.replies API
methods [...] will be limited to 1 request per minute [...] The maximum and default for the limit parameter has
been reduced to 15 objects." (https://docs.slack.dev/changelog/2025/05/29/rate-limit-changes-for-non-marketplace-apps/,
also https://api.slack.com/changelog/2025-05-terms-rate-limit-update-and-faq; existing installations from
September 2, 2025). ``emu.non_marketplace_app = True`` applies both: the 1-per-minute limit and the page cap.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

WINDOW = 60.0  # seconds of the emulator's clock: Slack's limits are per minute
NON_MARKETPLACE_METHODS = ("conversations.history", "conversations.replies")
NON_MARKETPLACE_PER_MINUTE = 1
NON_MARKETPLACE_PAGE = 15


class RateLimitMixin:
    def _init_rate_limits(self) -> None:
        self._limits: dict = {}  # method -> requests per minute
        self._calls_in_window: dict = {}  # method -> deque of emulator times of accepted calls
        self._clock_speed = 1.0
        self._clock_origin = (time.monotonic(), 0.0)  # (real monotonic, emulator time) at the last speed change
        self._clock_offset = 0.0
        self._non_marketplace = False

    # ------------------------------------------------------------------ the clock

    def now(self) -> float:
        """The emulator's clock in seconds (starts at 0). Tests may replace it: ``emu.now = lambda: t``."""
        with self._lock:
            real, emulated = self._clock_origin
            return emulated + (time.monotonic() - real) * self._clock_speed + self._clock_offset

    @property
    def clock_speed(self) -> float:
        """How many emulator seconds pass per real second (1: real time)."""
        return self._clock_speed

    @clock_speed.setter
    def clock_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("the clock speed must be positive")
        with self._lock:
            self._clock_origin = (time.monotonic(), self.now() - self._clock_offset)
            self._clock_speed = float(speed)

    def advance_clock(self, seconds: float) -> None:
        """Jump the emulator's clock ahead (e.g. past a rate-limit window) without waiting."""
        with self._lock:
            self._clock_offset += seconds

    # ------------------------------------------------------------------ limits

    def limit_rate(self, method: str, per_minute: int | None) -> None:
        """At most ``per_minute`` accepted calls of ``method`` in any minute of the emulator's clock; more are
        answered with 429 and ``Retry-After``. ``None`` lifts the limit. E.g. Tier 3:
        ``limit_rate("conversations.history", per_minute=50)``."""
        with self._lock:
            if per_minute is None:
                self._limits.pop(method, None)
            else:
                if per_minute < 1:
                    raise ValueError("per_minute must be at least 1")
                self._limits[method] = int(per_minute)
            self._calls_in_window.pop(method, None)

    @property
    def non_marketplace_app(self) -> bool:
        """True: the app is one distributed outside the Slack Marketplace since 2025-05-29 (see the module's
        docstring): conversations.history and .replies at 1 request per minute, 15 messages a page at most."""
        return self._non_marketplace

    @non_marketplace_app.setter
    def non_marketplace_app(self, value: bool) -> None:
        with self._lock:
            self._non_marketplace = bool(value)
        for method in NON_MARKETPLACE_METHODS:
            self.limit_rate(method, NON_MARKETPLACE_PER_MINUTE if value else None)

    def page_size(self, params: dict, default: int, maximum: int) -> int:
        """The ``limit`` argument as Slack applies it: ``default`` when absent (or not a positive number,
        an emulator choice), at most ``maximum``; 15 for both for a non-Marketplace app."""
        if self._non_marketplace:
            default = maximum = NON_MARKETPLACE_PAGE
        try:
            limit = int(str(params.get("limit") or default))
        except ValueError:
            limit = default
        return min(limit if limit > 0 else default, maximum)

    def _rate_limited(self, method: str) -> tuple | None:
        """(429, headers, body) when ``method`` is over its limit, else None (and the call is counted)."""
        with self._lock:
            per_minute = self._limits.get(method)
            if per_minute is None:
                return None
            now = self.now()
            calls: Any = self._calls_in_window.setdefault(method, collections.deque())
            while calls and calls[0] <= now - WINDOW:
                calls.popleft()
            if len(calls) < per_minute:
                calls.append(now)
                return None
            wait = calls[0] + WINDOW - now  # emulator seconds until the oldest call leaves the window
            retry_after = max(1, math.ceil(wait / self._clock_speed))
        return 429, {"Retry-After": str(retry_after)}, {"ok": False, "error": "ratelimited"}

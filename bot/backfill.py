"""The history of remembered channels, read back FINDIMAGE_BACKFILL_DAYS with conversations.history, in
one background thread, after every ack.

Pages are paced at FINDIMAGE_HISTORY_PER_MINUTE (Tier 3 allows 50+; apps distributed outside the
Marketplace get 1 a minute with at most 15 messages since 2025-05-29, so set 1 and 15 there). A 429 is
waited out for its Retry-After and halves the pace for the rest of that channel's backfill, so one
storm does not become a second. The cursor and the counts are saved after every page: a restart goes on
where it stopped. Channels take turns one page at a time, so a large one does not hold a small one up.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import Settings
from findimage.remembered import Remembered
from findimage.stores.base import ChannelState

from .remembering import Rememberer, is_person_message

log = logging.getLogger(__name__)

DAY = 86_400.0
# Errors after which the channel's history cannot be read at all: the backfill stops (the events go on,
# or the lifecycle events forget the channel).
FINAL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "missing_scope", "access_denied"}
IDLE_SECONDS = 30.0  # how often an idle backfiller looks for work it was not told about (another replica's)
CLAIM_SECONDS = 120.0  # a replica's claim on a channel's backfill, renewed with every page it saves


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked to wait, for a 429; None for any other error."""
    if exc.response.status_code != 429:
        return None
    headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
    value = headers.get("retry-after")
    value = value[0] if isinstance(value, list) else value
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def left_seconds(state: ChannelState, now: float) -> float | None:
    """An estimate of the time the backfill still needs: time spent so far, scaled by the share of the
    span (now back to `oldest`) already read; None before the first page."""
    if state.done:
        return 0.0
    if state.reached is None or state.busy_seconds <= 0:
        return None
    span = max(1.0, state.since - state.oldest)
    covered = min(1.0, max(0.0, (state.since - state.reached) / span))
    if covered <= 0:
        return None
    return state.busy_seconds * (1 - covered) / covered


class Backfiller:
    def __init__(self, settings: Settings, remembered: Remembered, rememberer: Rememberer, client: WebClient,
                 *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.remembered = remembered
        self.rememberer = rememberer
        self.client = client  # without the rate-limit retry handler: 429s are handled here, with the pace
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._interval: dict[str, float] = {}  # channel -> seconds between its requests (doubles after a 429)
        self._next_request = 0.0
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self.answered_apps = frozenset(settings.answer_bots)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="findimage-backfill", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
            except Exception:  # the store away, a bug: logged, and tried again later, never the thread's end
                log.exception("the backfill of remembered channels failed; trying again in %.0f s", IDLE_SECONDS)
                worked = False
            if not worked:
                self._wake.wait(IDLE_SECONDS)
                self._wake.clear()

    # ---- work ---------------------------------------------------------------------------------
    def pending(self) -> list[ChannelState]:
        """Channels still backfilling that this process may take (not claimed by another replica)."""
        return [s for s in self.remembered.registry.channels() if not s.done and not self._claimed_elsewhere(s)]

    def step(self) -> bool:
        """One page of each channel still backfilling; False when there was none."""
        pending = self.pending()
        for state in pending:
            if self._stop.is_set():
                break
            self.page(state.channel)
        return bool(pending)

    def page(self, channel: str) -> None:
        """Read one page of the channel's history (waiting for the pace first) and remember its images."""
        interval = self._interval.setdefault(channel, 60.0 / self.settings.history_per_minute)
        started = self.clock()
        wait = self._next_request - started
        if wait > 0:
            self._stop.wait(wait)  # a pause that stop() ends at once
        state = self.remembered.channel(channel)  # again after the wait: forgotten meanwhile?
        if state is None or state.done or self._claimed_elsewhere(state):
            return
        if not self.rememberer.may_remember(self.client, channel):  # e.g. off the allowlist: read no history
            self._next_request = self.clock() + interval
            return
        try:
            response = self.client.conversations_history(
                channel=channel, limit=self.settings.history_page, oldest=f"{state.oldest:.6f}",
                latest=f"{state.since:.6f}", inclusive=False, cursor=state.cursor)
        except SlackApiError as exc:
            self._next_request = self.clock() + interval
            self._failed(state, exc, started)
            return
        self._next_request = self.clock() + interval
        messages = response.get("messages") or []
        for message in messages:
            if message.get("files") and is_person_message(message, self.answered_apps):
                outcome = self.rememberer.remember_message(self.client, channel, message)
                state.images += outcome.images
                state.failed += outcome.failed
        state.pages += 1
        state.messages += len(messages)
        if messages:
            oldest_read = min(float(m.get("ts") or state.since) for m in messages)
            state.reached = oldest_read if state.reached is None else min(state.reached, oldest_read)
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        state.cursor = cursor
        state.done = not (response.get("has_more") and cursor)
        if state.done:
            state.reached = state.oldest
        state.busy_seconds += self.clock() - started
        self._save(state)
        if state.done:
            log.info("backfill of %s done: %d messages, %d images remembered, %d could not be", channel,
                     state.messages, state.images, state.failed)

    def _failed(self, state: ChannelState, exc: SlackApiError, started: float) -> None:
        wait = retry_after(exc)
        if wait is not None:
            # Waited out here, and the pace halves: asking again at the old rate would meet the limit again.
            self._interval[state.channel] = 2 * self._interval[state.channel]
            log.info("conversations.history of %s rate limited: waiting %.0f s, then one request every %.1f s",
                     state.channel, wait, self._interval[state.channel])
            self._next_request = max(self._next_request, self.clock() + wait)
            state.busy_seconds += self.clock() - started
            self._save(state)
            return
        error = exc.response.get("error")
        if error in FINAL_ERRORS:
            log.warning("the history of %s cannot be read (%s); its backfill stops", state.channel, error)
            state.done, state.cursor = True, None
            self._save(state)
            return
        # Anything else (Slack's trouble, a method a gateway lacks): tried again, at half the pace each time.
        self._interval[state.channel] = min(3600.0, 2 * self._interval[state.channel])
        self._next_request = self.clock() + self._interval[state.channel]
        log.warning("conversations.history of %s failed (%s); trying again in %.0f s", state.channel, error,
                    self._interval[state.channel])

    def _save(self, state: ChannelState) -> None:
        """Unless the channel was forgotten meanwhile (saving would turn it on again); the claim renewed."""
        state.worker, state.worker_until = self.me, self.clock() + CLAIM_SECONDS
        self.remembered.registry.update_channel(state)

    def _claimed_elsewhere(self, state: ChannelState) -> bool:
        """Another replica backfills this channel (its claim not lapsed): it is left to that one."""
        return bool(state.worker) and state.worker != self.me and state.worker_until > self.clock()

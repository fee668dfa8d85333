"""The bot's metrics: requests by kind and outcome, how long answers take, Slack's errors, the backlogs.

Served by /metrics (bot.web in HTTP mode, findimage.observability's server in Socket Mode). A request's
kind is named where it arrives (the handlers), its outcome by the answer (bot.answering returns it):
`timed` joins the two and counts both, with the time from arrival to the answer.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from findimage.config import Settings
from findimage.observability import Ready, counter, gauge, histogram, probe_store
from findimage.search import Searcher
from findimage.stores.base import LIFECYCLE, REMEMBER

log = logging.getLogger(__name__)

# What a request was: /findimage <text>; /findimage remember|remember status|forget; an image posted in a
# channel; "More like this" or "Show more"; the message shortcut; the Home tab opened; its example clicked.
KINDS = ("command", "channel_command", "posted_image", "button", "shortcut", "home", "home_example")
# What became of it: results shown; a search without matches; not answered here (visibility); not
# understood (an option, a button, a shortcut on a message without images); the queue full; an error
# answered; nothing to answer (a message without images).
OUTCOMES = ("answered", "empty", "refused", "invalid", "busy", "failed", "ignored")
SLACK_ERRORS = ("rate_limited", "server_error", "connection_error", "api_error")

REQUESTS = counter("findimage_bot_requests", "Slack requests the bot took, by kind and by what became of them",
                   kind=KINDS, outcome=OUTCOMES)
ANSWER_SECONDS = histogram("findimage_bot_answer_seconds", "Time from a request's arrival to its answer in Slack",
                           (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0), kind=KINDS)
SLACK_API_ERRORS = counter("findimage_slack_api_errors",
                           "Slack Web API responses that were errors, by reason (rate_limited: HTTP 429)",
                           reason=SLACK_ERRORS)
ANSWERS_QUEUED = gauge("findimage_bot_answers_queued",
                       "Answers accepted and not finished (queued or running; FINDIMAGE_MAX_QUEUED bounds it)")
REMEMBERING_BACKLOG = gauge("findimage_bot_remembering_backlog",
                            "Slack events kept in the remembered channels' journal and not applied yet, by lane",
                            mode="livemostrecent", lane=(REMEMBER, LIFECYCLE))


def counted(kind: str, outcome: str, since: float | None = None) -> None:
    """One request of `kind` done with `outcome`; with `since` (its arrival, time.monotonic) also timed."""
    REQUESTS.labels(kind=kind, outcome=outcome).inc()
    if since is not None:
        ANSWER_SECONDS.labels(kind=kind).observe(time.monotonic() - since)


def timed(kind: str, job: Callable[..., str | None]) -> Callable[..., None]:
    """`job` as the answer to a request of `kind` that arrived now (call this in the handler): the outcome it
    returns is counted when it ends, with the time since now; one that raised counts as failed."""
    since = time.monotonic()

    @functools.wraps(job)
    def answer(*args: Any) -> None:
        outcome = "failed"
        try:
            outcome = job(*args) or "answered"
        finally:
            counted(kind, outcome, since)

    return answer


class SlackErrorCounter(RetryHandler):
    """Counts Slack's error responses as the Web API client sees them (every attempt, retried or not); it
    never asks for a retry itself. First among a client's retry handlers, which slack_sdk asks about every
    response, and which Bolt copies into the client it makes for each request."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    def can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                  error: Exception | None = None) -> bool:
        reason = slack_error(response, error)
        if reason is not None:
            SLACK_API_ERRORS.labels(reason=reason).inc()
        return False


def slack_error(response: HttpResponse | None, error: Exception | None) -> str | None:
    """The reason an API call's response is an error, from SLACK_ERRORS; None for a success."""
    if response is None:
        return "connection_error" if error is not None else None
    if response.status_code == 429:
        return "rate_limited"
    if response.status_code >= 500:
        return "server_error"
    if response.status_code >= 400 or (isinstance(response.body, dict) and response.body.get("ok") is False):
        return "api_error"
    return None


def readiness_probe(settings: Settings, searcher: Searcher) -> Callable[[], Ready]:
    """The bot can answer when its archive is mounted and its store counts; each probe also renews the
    remembering backlog gauge (the journal is in the store, so it is read here, never on a scrape)."""

    def probe() -> Ready:
        ready = probe_store(searcher.store.count, settings.archive)
        remembered = searcher.remembered
        if remembered is not None:
            try:
                waiting = remembered.registry.backlog()
            except Exception as exc:  # the archive may still answer: remembering's own log says the rest
                log.debug("the remembering backlog is not known (%s)", exc)
            else:
                for lane in (REMEMBER, LIFECYCLE):
                    REMEMBERING_BACKLOG.labels(lane=lane).set(waiting.get(lane, 0))
        return ready

    return probe

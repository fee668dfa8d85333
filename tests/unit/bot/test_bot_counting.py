"""The bot's counting: an answer's outcome and time, and which Slack responses are errors."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from slack_sdk.http_retry.response import HttpResponse

from bot.metrics import OUTCOMES, slack_error, timed


def requests(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("findimage_bot_requests_total", {"kind": kind, "outcome": outcome}) or 0.0


def timings(kind: str) -> float:
    return REGISTRY.get_sample_value("findimage_bot_answer_seconds_count", {"kind": kind}) or 0.0


def test_an_answer_counts_the_outcome_it_returns_and_one_that_raises_counts_as_failed():
    before = (requests("button", "empty"), requests("button", "failed"), timings("button"))
    timed("button", lambda: "empty")()

    def broken():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        timed("button", broken)()
    after = (requests("button", "empty"), requests("button", "failed"), timings("button"))

    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 2]
    assert {"answered", "empty", "refused", "busy", "failed"} <= set(OUTCOMES)


@pytest.mark.parametrize(("status", "body", "error", "reason"), [
    (200, {"ok": True}, None, None),
    (200, {"ok": False, "error": "channel_not_found"}, None, "api_error"),
    (429, {}, None, "rate_limited"),
    (503, {}, None, "server_error"),
    (403, {}, None, "api_error"),
    (None, None, ConnectionResetError(), "connection_error"),
])
def test_which_slack_responses_count_as_errors(status, body, error, reason):
    response = None if status is None else HttpResponse(status_code=status, headers={}, body=body)
    assert slack_error(response, error) == reason

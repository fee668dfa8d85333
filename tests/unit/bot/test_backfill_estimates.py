"""How the backfill reads Slack's 429s and estimates the time a channel's history still needs."""
from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.backfill import DAY, left_seconds, retry_after
from bot.channel_memory import duration
from findimage.i18n import english
from findimage.stores.base import ChannelState


def error(status: int, headers: dict) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="https://slack.com/api/conversations.history",
                             req_args={}, data={"ok": False, "error": "ratelimited"}, headers=headers,
                             status_code=status)
    return SlackApiError("ratelimited", response)


def test_retry_after_is_read_from_a_429_and_only_from_one():
    assert retry_after(error(429, {"Retry-After": "30"})) == 30.0
    assert retry_after(error(429, {"retry-after": ["7"]})) == 7.0  # as slack_sdk may hand headers over
    assert retry_after(error(429, {})) == 1.0  # a 429 without the header: a second, not a storm
    assert retry_after(error(200, {"Retry-After": "30"})) is None


def test_the_time_left_scales_the_time_spent_by_the_share_of_the_days_still_unread():
    since = 1_000 * DAY
    state = ChannelState("C0", "U0", since, since - 90 * DAY)
    assert left_seconds(state, since) is None  # nothing read yet: no estimate
    state.reached, state.busy_seconds = since - 30 * DAY, 600.0  # a third of the span in 10 minutes
    assert left_seconds(state, since) == pytest.approx(1200.0)
    state.done = True
    assert left_seconds(state, since) == 0.0


def test_durations_read_like_a_person_would_say_them():
    assert [duration(s, english()) for s in (30, 600, 3 * 3600, 11 * 3600, 4 * 86400)] == [
        "about a minute", "about 10 minutes", "about 3 hours", "about 11 hours", "about 4 days"]

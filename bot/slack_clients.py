"""findimage's Slack Web API clients, each naming findimage and its version first in its User-Agent: the
bot's (retrying what Slack asks to retry, its errors counted), the backfill's (a 429 comes back to it) and
the start-up checks' (no log line per failed try)."""
from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web.internal_utils import get_user_agent

from findimage import USER_AGENT
from findimage.config import Settings

from .metrics import SlackErrorCounter

WEB_API_TIMEOUT_SECONDS = 30

# The checks' client logs no line per failed try: the sentence bot.credentials makes says what failed, once.
_QUIET = logging.getLogger(__name__ + ".tries")
_QUIET.setLevel(logging.CRITICAL)


def make_web_client(settings: Settings) -> WebClient:
    """The Web API client, pointed at SLACK_API_URL, retrying what Slack asks to retry (429 Retry-After), its
    errors counted (bot.metrics)."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=WEB_API_TIMEOUT_SECONDS,
        headers=slack_headers(),  # findimage/<version> first in the User-Agent
        retry_handlers=[
            SlackErrorCounter(),  # first: slack_sdk asks the handlers in turn until one retries
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),  # sleeps Retry-After seconds, then retries
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def history_client(client: WebClient) -> WebClient:
    """The backfill's client: the same token and Slack, but a 429 comes back to it (bot.backfill slows
    its pace), instead of being slept through and retried at the old rate."""
    return WebClient(token=client.token, base_url=client.base_url, timeout=WEB_API_TIMEOUT_SECONDS,
                     headers=slack_headers(),  # findimage/<version> first in the User-Agent
                     retry_handlers=[SlackErrorCounter(), ConnectionErrorRetryHandler(max_retry_count=2),
                                     ServerErrorRetryHandler(max_retry_count=2)])


# Slack waits 3 s for an ack; a look-up the ack waits on (the requester's language) gets less than that.
BEFORE_ACK_TIMEOUT_SECONDS = 2  # whole seconds (slack_sdk)


def before_ack(client: WebClient) -> WebClient:
    """The same client (token, Slack, headers) for a look-up an ack waits on: a short timeout and no retry
    (not even a 429's Retry-After), so the ack is in time; whoever asks does without the answer then."""
    copy = WebClient(token=client.token, base_url=client.base_url, timeout=BEFORE_ACK_TIMEOUT_SECONDS,
                     ssl=client.ssl, proxy=client.proxy, retry_handlers=[SlackErrorCounter()], logger=client.logger)
    copy.headers = dict(client.headers)  # its User-Agent too
    return copy


def quiet(client: WebClient) -> WebClient:
    """The same client (token, Slack, retries, headers), logging no line per failed try."""
    copy = WebClient(token=client.token, base_url=client.base_url, timeout=client.timeout, ssl=client.ssl,
                     proxy=client.proxy, retry_handlers=client.retry_handlers, logger=_QUIET)
    copy.headers = dict(client.headers)  # its User-Agent too
    return copy


class _NamedAgent(dict):
    """Headers whose User-Agent keeps findimage's token whoever sets it.

    Bolt makes a client for each request from our client's headers dict (the same dict, not a copy), and
    slack_sdk's constructor writes its own User-Agent into it: user_agent_prefix alone would be lost on
    every call a listener makes, and on ours too after the first request.
    """

    def __setitem__(self, key: str, value: str) -> None:
        if key.lower() == "user-agent" and not value.startswith(USER_AGENT + " "):
            value = f"{USER_AGENT} {value}"
        super().__setitem__(key, value)


def slack_headers() -> dict[str, str]:
    """A new headers dict for one WebClient (never empty: slack_sdk replaces an empty one)."""
    return _NamedAgent({"User-Agent": get_user_agent(USER_AGENT)})

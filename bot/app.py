"""The app factory: one Bolt App built from settings, with the models loaded before the first request."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from findimage import process
from findimage.config import ConfigError, Settings, require_slack
from findimage.search import Searcher

from . import handlers
from .answering import Services
from .channels import ChannelPolicy
from .dedupe import seen_keys
from .delivery import LinkPresenter, UploadPresenter
from .image_links import ImageLinks
from .work import WorkPool

log = logging.getLogger(__name__)
WEB_API_TIMEOUT_SECONDS = 30


def configure_logging(level: int = logging.INFO) -> None:
    """Private files and escaped log lines with time and origin (findimage.process), unless the host
    (gunicorn, pytest) configured logging already."""
    process.start(level)
    logging.getLogger("bot").setLevel(level)


def make_web_client(settings: Settings) -> WebClient:
    """The Web API client, pointed at SLACK_API_URL, retrying what Slack asks to retry (429 Retry-After)."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=WEB_API_TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),  # sleeps Retry-After seconds, then retries
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def create_app(settings: Settings, searcher: Searcher | None = None, client: WebClient | None = None, *,
               links: ImageLinks | None = None, work: WorkPool | None = None) -> App:
    """The Bolt app with every handler registered.

    `searcher` and `client` may be passed in (tests, Slack-compatible gateways); by default they are
    built from the settings. With `links` (the HTTP server's own signed image links) matches are shown
    as image blocks served by that server; without them they are uploaded.
    """
    require_slack(settings)
    client = client or make_web_client(settings)
    searcher = searcher or Searcher(settings)
    searcher.warm_up()  # the first user must not wait for a model load
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret or "",  # Bolt verifies every HTTP request with it
            logger=logging.getLogger("bot.bolt"),
            process_before_response=False,  # ack first; listeners hand the slow part to the work pool
        )
    except BoltError as exc:  # Bolt checks the token with auth.test right here
        raise ConfigError([f"Slack refused SLACK_BOT_TOKEN ({exc}); copy the Bot User OAuth Token (xoxb-...) "
                           "from the app's OAuth & Permissions page."]) from exc
    # Bolt's own auth.test result is not public API; the team id decides who counts as another organisation.
    policy = ChannelPolicy(settings, client.auth_test().get("team_id"))
    presenter = LinkPresenter(links, settings.archive) if links else UploadPresenter(
        settings.archive, max_pixels=settings.max_image_pixels, budget=settings.decode_budget_bytes)
    services = Services(settings, searcher, presenter, work or WorkPool.from_settings(settings), seen_keys(settings),
                        policy)
    handlers.register_all(app, services)
    return app

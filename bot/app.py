"""The app factory: one Bolt App built from settings, with the models loaded before the first request."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (ConnectionErrorRetryHandler, RateLimitErrorRetryHandler,
                                                   ServerErrorRetryHandler)

from findimage.config import ConfigError, require_slack
from findimage.search import Searcher

from . import handlers
from .answering import Services
from .channels import ChannelPolicy
from .dedupe import SeenRecently
from .delivery import LinkPresenter, UploadPresenter
from .image_links import ImageLinks
from .work import WorkPool

log = logging.getLogger(__name__)
WEB_API_TIMEOUT_SECONDS = 30


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines with time and origin, unless the host (gunicorn, pytest) configured logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot").setLevel(level)


def make_web_client(settings) -> WebClient:
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


def uses_image_links(settings) -> bool:
    """Image blocks need a web server Slack can reach: HTTP mode with FINDIMAGE_PUBLIC_BASE_URL only."""
    return bool(settings.public_base_url) and not settings.slack_app_token


def create_app(settings, searcher: Searcher | None = None, client: WebClient | None = None, *,
               image_links: bool | None = None, links: ImageLinks | None = None, work: WorkPool | None = None) -> App:
    """The Bolt app with every handler registered.

    `searcher` and `client` may be passed in (tests, Slack-compatible gateways); by default they are
    built from the settings. `image_links` defaults to `uses_image_links(settings)`; `links` are the
    web server's own ImageLinks (one clock and key for making and checking links).
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
    services = Services(settings, searcher, _presenter(settings, image_links, links), work or WorkPool(),
                        SeenRecently(), policy)
    handlers.register_all(app, services)
    return app


def _presenter(settings, image_links: bool | None, links: ImageLinks | None):
    if image_links is None:
        image_links = uses_image_links(settings)
    if links is None:
        links = ImageLinks.from_settings(settings) if image_links else None
    if image_links and links is None:
        log.warning("FINDIMAGE_PUBLIC_BASE_URL needs a signing key (FINDIMAGE_URL_SIGNING_KEY or "
                    "SLACK_SIGNING_SECRET); uploading images instead")
    if settings.public_base_url and settings.slack_app_token:
        log.warning("FINDIMAGE_PUBLIC_BASE_URL is ignored in Socket Mode (no web server); uploading images")
    if links is not None:
        return LinkPresenter(links, settings.archive)
    return UploadPresenter(settings.archive)

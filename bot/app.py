"""The app factory: one Bolt App built from settings, with the models loaded before the first request."""
from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.error import BoltError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from findimage import logs, process
from findimage.backends import open_remembered
from findimage.config import ConfigError, Settings, require_slack
from findimage.search import Searcher

from . import handlers
from .backfill import Backfiller
from .channel_memory import ChannelMemory
from .channels import ChannelPolicy
from .credentials import BOT_TOKEN_HINT, bot_identity
from .dedupe import SeenKeys, seen_keys
from .delivery import LinkPresenter, UploadPresenter
from .image_links import ImageLinks
from .metrics import SlackErrorCounter
from .remembering import Rememberer
from .services import Services
from .user_agent import slack_headers
from .work import WorkPool

log = logging.getLogger(__name__)
WEB_API_TIMEOUT_SECONDS = 30


class FindimageApp(App):
    """The Bolt app, holding the services its listeners share (the WSGI app and the shutdown reach them)."""

    services: Services

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        """Every line logged for this request names it and its channel (request_id, channel_id: findimage.logs),
        also those of its listener and of its answer on the work pool; in HTTP mode the id is the one
        bot.wsgi gave the request."""
        request_id = logs.current_ids().get("request_id") or logs.new_id()
        with logs.ids(request_id=request_id, channel_id=req.context.channel_id):
            return super().dispatch(req)


def configure_logging() -> None:
    """Private files and the log as FINDIMAGE_LOG_LEVEL (INFO by default) and FINDIMAGE_LOG_FORMAT ask
    (findimage.process), unless `findimage`, gunicorn's arbiter or the host (pytest) configured it already."""
    process.start(logging.INFO)


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


class _SameTokenTwice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself, and warns at every start that the client
    given to it (the same token, with findimage's retries and User-Agent) wins: nothing an admin can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


BOLT_LOG = logging.getLogger("bot.bolt")
BOLT_LOG.addFilter(_SameTokenTwice())


def channel_memory(searcher: Searcher, policy: ChannelPolicy, seen: SeenKeys, client: WebClient,
                   bot_user_id: str | None) -> ChannelMemory | None:
    """Remembering posted images (FINDIMAGE_REMEMBER) into the searcher's store of remembered images, with
    the searcher's settings and image model."""
    remembered, settings = searcher.remembered, searcher.settings
    if remembered is None:
        return None
    rememberer = Rememberer(settings, remembered, searcher.image_embedder, policy)
    backfiller = Backfiller(settings, remembered, rememberer, history_client(client))
    return ChannelMemory(rememberer, backfiller, client, bot_user_id, seen)


def create_app(settings: Settings, searcher: Searcher | None = None, *, links: ImageLinks | None = None,
               work: WorkPool | None = None, seen: SeenKeys | None = None) -> FindimageApp:
    """The Bolt app with every handler registered.

    `searcher`, `work` and `seen` (what was answered already) may be passed in (tests); by default they are
    built from the settings. With `links` (the HTTP server's own signed image links) matches are shown as
    image blocks served by that server; without them they are uploaded.
    """
    require_slack(settings)
    client = make_web_client(settings)
    # Before the models (a minute on a small server): a token Slack refuses stops the start in a second.
    # The team id decides who counts as another organisation (Bolt's own auth.test result is not public API).
    identity = bot_identity(settings, client)
    searcher = searcher or Searcher(settings)
    searcher.warm_up()  # the first user must not wait for a model load
    try:
        app = FindimageApp(
            client=client,
            signing_secret=settings.slack_signing_secret or "",  # Bolt verifies every HTTP request with it
            logger=BOLT_LOG,
            # Listeners run on Bolt's threads after the ack: with the request's ids (Bolt's default size)
            listener_executor=logs.CarryingExecutor(max_workers=5),
            process_before_response=False,  # ack first; listeners hand the slow part to the work pool
        )
    except BoltError as exc:  # Bolt checks the token again with auth.test right here
        raise ConfigError([f"Slack refused SLACK_BOT_TOKEN ({exc}); {BOT_TOKEN_HINT}"]) from exc
    if searcher.remembered is None:  # opened for writing (FINDIMAGE_REMEMBER): None when off
        searcher.remembered = open_remembered(settings)
    policy = ChannelPolicy(settings, identity.get("team_id"), searcher.remembered)
    presenter = LinkPresenter(links, settings.archive) if links else UploadPresenter(settings.archive,
                                                                                     settings.archive_images)
    seen = seen or seen_keys(settings)
    memory = channel_memory(searcher, policy, seen, client, identity.get("user_id"))
    services = Services(settings, searcher, presenter, work or WorkPool.from_settings(settings), seen, policy,
                        searcher.remembered, memory)
    app.services = services
    handlers.register_all(app, services)
    if services.memory is not None:
        services.memory.start()  # new posts and the backfills resumed from where they stopped
    return app

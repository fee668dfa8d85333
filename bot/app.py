"""The wiring: the Bolt app with every handler registered, and in HTTP mode the web app around it, built
from the settings with the models loaded before the first request. Socket Mode runs the Bolt app
(bot.server); gunicorn serves the web app (`create()` is its factory)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.error import BoltError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient

from findimage import logs, process
from findimage.backends import open_remembered
from findimage.config import ConfigError, Settings, load_settings, report_problems, require_slack
from findimage.imaging import thumbnail_jpeg
from findimage.observability import Readiness
from findimage.search import Searcher

from . import handlers
from .backfill import Backfiller
from .channel_memory import ChannelMemory
from .channels import ChannelPolicy
from .credentials import BOT_TOKEN_HINT, bot_identity, require_http_mode, signing_secret
from .dedupe import SeenKeys, seen_keys
from .delivery import LinkPresenter, UploadPresenter
from .image_links import ImageLinks
from .metrics import readiness_probe
from .previews import Previews
from .remembering import Rememberer
from .services import Services
from .slack_clients import history_client, make_web_client
from .web.images import SignedImages
from .web.monitoring import Monitoring
from .web.routes import Routes, WebApp
from .web.slack_events import SlackEvents
from .work import WorkPool

log = logging.getLogger(__name__)


class FindimageApp(App):
    """The Bolt app, holding the services its listeners share (the WSGI app and the shutdown reach them)."""

    services: Services

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        """Every line logged for this request names it and its channel (request_id, channel_id: findimage.logs),
        also those of its listener and of its answer on the work pool; in HTTP mode the id is the one
        bot.web.routes gave the request."""
        request_id = logs.current_ids().get("request_id") or logs.new_id()
        with logs.ids(request_id=request_id, channel_id=req.context.channel_id):
            return super().dispatch(req)


def configure_logging() -> None:
    """Private files and the log as FINDIMAGE_LOG_LEVEL (INFO by default) and FINDIMAGE_LOG_FORMAT ask
    (findimage.process), unless `findimage`, gunicorn's arbiter or the host (pytest) configured it already."""
    process.start(logging.INFO)


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
            # Slack's signature is checked once, by the web app before Bolt sees the body (bot.web.slack_events);
            # Socket Mode has none to check.
            request_verification_enabled=False,
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


@dataclass(frozen=True)
class WebParts:
    """What a test puts in place of the parts of the HTTP app that the settings would make: the searcher,
    the answers' pool, the seen keys, the previews, and the clocks of image links and of readiness."""

    searcher: Searcher | None = None
    work: WorkPool | None = None
    seen: SeenKeys | None = None
    previews: Previews | None = None
    link_clock: Callable[[], float] = time.time
    health_clock: Callable[[], float] = time.monotonic


def build_wsgi_app(settings: Settings, given: WebParts = WebParts()) -> WebApp:
    """The whole HTTP app (bot.web): its routes, the Bolt app behind `/slack/events`, signed image links
    where FINDIMAGE_PUBLIC_BASE_URL is set; the models load here, before the server takes its first request."""
    require_http_mode(settings)
    links = ImageLinks.from_settings(settings, clock=given.link_clock) if settings.public_base_url else None
    bolt_app = create_app(settings, given.searcher, links=links, work=given.work, seen=given.seen)
    services = bolt_app.services
    readiness = Readiness(readiness_probe(settings, services.searcher), clock=given.health_clock)
    readiness.start()
    images = None
    if links is not None:
        previews = given.previews or Previews(partial(thumbnail_jpeg, max_pixels=settings.max_image_pixels,
                                                      budget=settings.decode_budget_bytes))
        images = SignedImages(links, services.searcher.store, previews, settings)
    work = services.work  # its length in /healthz, not cached: a router or an operator watches it change
    routes = Routes(SlackEvents(bolt_app, signing_secret(settings)),
                    Monitoring(readiness, lambda: {"queued": work.pending}), images)
    return WebApp(routes, work, services.memory)


def create(settings: Settings | None = None) -> WebApp:
    """gunicorn's app factory for `gunicorn 'bot.app:create()'`: the settings of the environment and `.env`
    (`findimage bot` builds its worker's app with ready_app, from the settings it checked)."""
    configure_logging()
    try:
        return ready_app(settings or load_settings())
    except ConfigError as exc:
        report_problems(exc.problems)
        raise


def ready_app(settings: Settings) -> WebApp:
    """The whole HTTP app, built and announced in the log."""
    app = build_wsgi_app(settings)
    images = app.routes.images
    mode = f"image links under {images.links.base_url}" if images is not None else "uploaded images"
    log.info("findimage bot ready over HTTP (%s)", mode)
    return app

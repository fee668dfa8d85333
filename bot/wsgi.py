"""HTTP mode: one WSGI app, which `findimage bot` serves with gunicorn (bot.server).

Routes: POST /slack/events (body limit and signature check here, then Bolt: slash commands, events),
GET /healthz (status, document count and queued answers only), and with FINDIMAGE_PUBLIC_BASE_URL set,
GET /images/<image_id>.jpg?expires=..&v=..&sig=.. (signed archive previews).
"""
from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from findimage import __version__
from findimage.archive_files import ArchiveFileRefused, Indexed, is_servable, read_archive_file
from findimage.config import ConfigError, Settings, load_settings, report_problems, require_slack
from findimage.imaging import ImageError, thumbnail_jpeg
from findimage.search import Searcher

from .app import configure_logging, create_app
from .dedupe import SeenKeys
from .image_links import PATH_PREFIX, ImageLinks, MalformedLink, content_tag, parse_link
from .previews import Previews, RenderBusy
from .work import WorkPool

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
# Slack's payloads are a few KB (a message event with ten files stays far below 64 KB); anything
# larger is not from Slack and is refused before it is read.
MAX_BODY_BYTES = 256 * 1024
HEALTH_TTL_SECONDS = 5.0  # how old a count /healthz may show
HEALTH_TIMEOUT_SECONDS = 5.0  # a count not back by then: the store is not answering
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
UNAVAILABLE: tuple[str, dict] = ("503 Service Unavailable", {"status": "unavailable"})


class BodyRefused(Exception):
    def __init__(self, status: str, sentence: str):
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


class HealthCheck:
    """The store's document count for /healthz, kept fresh in the background: a request never waits on the store.

    Health checks come from platforms and from anyone who finds the URL, on the request threads Slack's
    acks need; with Elasticsearch one count can take its timeout and retries (half a minute). So every
    request answers at once from the last count; once that is HEALTH_TTL_SECONDS old, one thread asks the
    store again (never two at once). A count still running after HEALTH_TIMEOUT_SECONDS is a store that
    does not answer: 503 until it comes back.
    """

    def __init__(self, count: Callable[[], int], *, clock=time.monotonic, ttl: float = HEALTH_TTL_SECONDS,
                 timeout: float = HEALTH_TIMEOUT_SECONDS):
        self._count = count
        self._clock = clock
        self._ttl = ttl
        self._timeout = timeout
        self._lock = threading.Lock()  # held for bookkeeping only, never around the store
        self._last: tuple[str, dict] | None = None
        self._fresh_until = float("-inf")
        self._refreshing_since: float | None = None

    def start(self) -> None:
        """The first count, before the server takes requests; waited for at most the timeout."""
        thread = self._claim_refresh()
        if thread is not None:
            thread.join(self._timeout)

    def status(self) -> tuple[str, dict]:
        self._claim_refresh()
        with self._lock:
            now, last, since = self._clock(), self._last, self._refreshing_since
        if since is not None and now - since >= self._timeout:
            return UNAVAILABLE
        return last or UNAVAILABLE

    def _claim_refresh(self) -> threading.Thread | None:
        """A started refresh thread when the last count is stale and none is running; else None."""
        with self._lock:
            now = self._clock()
            if self._refreshing_since is not None or now < self._fresh_until:
                return None
            self._refreshing_since = now
        thread = threading.Thread(target=self._refresh, name="health-check", daemon=True)
        thread.start()
        return thread

    def _refresh(self) -> None:
        result = UNAVAILABLE
        try:
            result = ("200 OK", {"status": "ok", "documents": int(self._count())})
        except Exception as exc:
            log.warning("health check: the store is not answering (%s: %s)", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._last = result
                self._fresh_until = self._clock() + self._ttl
                self._refreshing_since = None


class FindimageWsgi:
    def __init__(self, settings: Settings, bolt_app, searcher: Searcher, links: ImageLinks | None, *,
                 previews: Previews | None = None, health_clock=time.monotonic, work: WorkPool | None = None):
        self.settings = settings
        self.work = work  # the answers' queue: its length in /healthz, drained on shutdown (bot.server)
        self.memory = getattr(getattr(bolt_app, "services", None), "memory", None)  # stopped on shutdown
        self.slack = SlackRequestHandler(bolt_app, path=SLACK_PATH)
        self.verifier = SignatureVerifier(signing_secret(settings))
        self.searcher = searcher
        self.links = links
        self.previews = previews or Previews(partial(thumbnail_jpeg, max_pixels=settings.max_image_pixels,
                                                     budget=settings.decode_budget_bytes))
        self.archive = Path(settings.archive).resolve()
        self.health = HealthCheck(lambda: searcher.store.count(), clock=health_clock)
        self.health.start()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._healthz(start_response)
        if path.startswith(PATH_PREFIX) and method in ("GET", "HEAD") and self.links is not None:
            try:
                return self._image(self.links, path, environ.get("QUERY_STRING", ""), start_response)
            except Exception:
                # Logged here, by path: gunicorn would log the whole URL, whose signature opens the image.
                log.exception("image link %s failed", path[:100])
                return _text(start_response, "500 Internal Server Error", "Something went wrong with this image.")
        if method == "POST":
            return self._post(path, environ, start_response)
        return self.slack(environ, start_response)

    # ---- POST: bounded, verified, then Bolt -----------------------------------------------------
    def _post(self, path: str, environ, start_response):
        try:
            body = read_bounded_body(environ, MAX_BODY_BYTES)
        except BodyRefused as refused:
            log.warning("refused a POST to %s from %s: %s", path, environ.get("REMOTE_ADDR", "?"), refused)
            return _text(start_response, refused.status, refused.sentence)
        if path != SLACK_PATH:
            return _text(start_response, "404 Not Found", "Not found.")
        if not self._signed_by_slack(environ, body):
            # Never the body: whoever sends forged requests may also send secrets or junk to fill the log.
            log.warning("refused a request without a valid Slack signature from %s (%d bytes)",
                        environ.get("REMOTE_ADDR", "?"), len(body))
            return _reply(start_response, "401 Unauthorized", "application/json", b'{"error": "invalid request"}')
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.slack(environ, start_response)

    def _signed_by_slack(self, environ, body: bytes) -> bool:
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            return False
        return self.verifier.is_valid(body, timestamp, signature)

    # ---- /healthz -------------------------------------------------------------------------------
    def _healthz(self, start_response):
        """Up when the store answers; the platform restarts us otherwise. A status, the version and two counts only."""
        status, body = self.health.status()
        body = {"status": body["status"], "version": __version__, **body}
        if self.work is not None:  # not cached: a router or an operator watches it change
            body = {**body, "queued": self.work.pending}
        return _reply(start_response, status, "application/json", json.dumps(body).encode(),
                      [("Cache-Control", "no-store")])

    # ---- /images/... ----------------------------------------------------------------------------
    def _image(self, links: ImageLinks, path: str, query_string: str, start_response):
        try:
            link = parse_link(path, query_string)
        except MalformedLink as exc:
            log.info("malformed image link %s: %s", path[:100], exc)
            return _text(start_response, "400 Bad Request", "This image link is malformed.")
        if not links.is_valid(link):
            return _text(start_response, "403 Forbidden", "This image link is invalid or expired.")
        try:
            doc = self.searcher.store.get(link.image_id)
        except Exception as exc:
            log.warning("cannot look up image %s: %s: %s", link.image_id, type(exc).__name__, exc)
            return _text(start_response, "503 Service Unavailable", "The archive is not reachable right now.",
                         [("Retry-After", "30")])
        if doc is None:
            return _text(start_response, "404 Not Found", "This image is no longer in the archive.")
        if content_tag(doc.sha256) != link.tag:
            return _text(start_response, "404 Not Found", "This image has been replaced since the link was made.")
        indexed = Indexed(doc.size, doc.mtime)
        if not is_servable(self.archive, doc.relative_path, indexed):
            # Gone, changed since indexing (the stored hash no longer describes its bytes), or reached
            # through a link that leaves the archive: never served.
            log.info("image %s is not in the archive as indexed; not served", doc.image_id)
            return _text(start_response, "404 Not Found", "This image is no longer in the archive.")
        try:
            data = self.previews.get(doc.sha256, partial(self._read, doc.relative_path, indexed), doc.image_name)
        except RenderBusy as exc:
            log.info("image link answered busy: %s", exc)
            return _text(start_response, "503 Service Unavailable", "Too many images at once; try again shortly.",
                         [("Retry-After", "2")])
        except ImageError as exc:
            log.warning("cannot serve image %s: %s", doc.image_id, exc)
            return _text(start_response, "404 Not Found", "This image cannot be shown.")
        return _reply(start_response, "200 OK", "image/jpeg", data, [("Cache-Control", "private, max-age=86400")])

    def _read(self, relative_path: str, indexed: Indexed) -> bytes:
        try:
            return read_archive_file(self.archive, relative_path, self.settings.decode_budget_bytes, indexed)
        except ArchiveFileRefused as exc:
            raise ImageError(str(exc)) from None


def read_bounded_body(environ, limit: int) -> bytes:
    """The request body, read only when it is at most `limit` bytes; BodyRefused otherwise.

    A Content-Length above the limit is refused before a byte is read; a chunked body (no length)
    is read up to limit + 1 bytes and refused if it gets there.
    """
    announced = (environ.get("CONTENT_LENGTH") or "").strip()
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if announced:
        if not announced.isascii() or not announced.isdigit():
            raise BodyRefused("400 Bad Request", "The Content-Length header is not a number.")
        if int(announced) > limit:
            raise BodyRefused("413 Content Too Large", f"Request bodies are limited to {limit // 1024} KB.")
        wanted = int(announced)
    elif chunked:
        wanted = limit + 1
    else:
        return b""
    stream, data = environ["wsgi.input"], bytearray()
    while len(data) < wanted:
        chunk = stream.read(min(64 * 1024, wanted - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise BodyRefused("413 Content Too Large", f"Request bodies are limited to {limit // 1024} KB.")
    return bytes(data)


def _text(start_response, status: str, sentence: str, headers=()):
    return _reply(start_response, status, "text/plain; charset=utf-8", f"{sentence}\n".encode(), headers)


def _reply(start_response, status: str, content_type: str, body: bytes, headers=()):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]


def build_wsgi_app(settings: Settings, searcher: Searcher | None = None, client=None, *, link_clock=time.time,
                   health_clock=time.monotonic, previews: Previews | None = None,
                   work: WorkPool | None = None, seen: SeenKeys | None = None) -> FindimageWsgi:
    """The whole HTTP app; models load here, before the server takes its first request."""
    require_http_mode(settings)
    searcher = searcher or Searcher(settings)
    links = ImageLinks.from_settings(settings, clock=link_clock) if settings.public_base_url else None
    work = work or WorkPool.from_settings(settings)
    bolt_app = create_app(settings, searcher, client, links=links, work=work, seen=seen)
    return FindimageWsgi(settings, bolt_app, searcher, links, previews=previews, health_clock=health_clock,
                         work=work)


def require_http_mode(settings: Settings) -> None:
    require_slack(settings)
    signing_secret(settings)


def signing_secret(settings: Settings) -> str:
    """SLACK_SIGNING_SECRET; ConfigError without it (never an empty key, which anyone could sign with)."""
    if not settings.slack_signing_secret:
        raise ConfigError(["SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request from Slack with it "
                           "(Basic Information > App Credentials > Signing Secret)."])
    return settings.slack_signing_secret


def create(settings: Settings | None = None) -> FindimageWsgi:
    """gunicorn's app factory for `gunicorn 'bot.wsgi:create()'`: the settings of the environment and `.env`
    (`findimage bot` builds its worker's app with ready_app, from the settings it checked)."""
    configure_logging()
    try:
        return ready_app(settings or load_settings())
    except ConfigError as exc:
        report_problems(exc.problems)
        raise


def ready_app(settings: Settings) -> FindimageWsgi:
    """The whole HTTP app, built and announced in the log."""
    app = build_wsgi_app(settings)
    mode = f"image links under {app.links.base_url}" if app.links else "uploaded images"
    log.info("findimage bot ready over HTTP (%s)", mode)
    return app

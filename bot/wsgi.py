"""HTTP mode: one WSGI app, which `findimage bot` serves with gunicorn (bot.server).

Routes: POST /slack/events (body limit and signature check here, then Bolt: slash commands, events),
GET /metrics, /healthz (alive: status, version and queued answers only) and /readyz (can answer now: one
sentence; findimage.observability), and with FINDIMAGE_PUBLIC_BASE_URL set,
GET /images/<image_id>.jpg?expires=..&v=..&sig=.. (signed archive previews).
"""
from __future__ import annotations

import io
import logging
import re
import time
from functools import partial
from pathlib import Path

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from findimage import logs
from findimage.archive_files import ArchiveFileRefused, Indexed, is_servable, read_archive_file
from findimage.config import ConfigError, Settings, load_settings, report_problems
from findimage.imaging import ImageError, thumbnail_jpeg
from findimage.observability import Readiness, monitoring_page
from findimage.search import Searcher

from .app import FindimageApp, configure_logging, create_app
from .credentials import require_http_mode, signing_secret
from .dedupe import SeenKeys
from .image_links import PATH_PREFIX, ImageLinks, MalformedLink, content_tag, parse_link
from .metrics import readiness_probe
from .previews import Previews, RenderBusy
from .work import WorkPool

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
# Slack's payloads are a few KB (a message event with ten files stays far below 64 KB); anything
# larger is not from Slack and is refused before it is read.
MAX_BODY_BYTES = 256 * 1024
MONITORING_PATHS = ("/metrics", "/healthz", "/readyz")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class BodyRefused(Exception):
    def __init__(self, status: str, sentence: str):
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


class FindimageWsgi:
    def __init__(self, settings: Settings, bolt_app: FindimageApp, links: ImageLinks | None, *,
                 previews: Previews | None = None, health_clock=time.monotonic):
        self.settings = settings
        services = bolt_app.services
        self.work = services.work  # the answers' queue: its length in /healthz, drained on shutdown (bot.server)
        self.memory = services.memory  # stopped on shutdown
        self.slack = SlackRequestHandler(bolt_app, path=SLACK_PATH)
        self.verifier = SignatureVerifier(signing_secret(settings))
        self.searcher = services.searcher
        self.links = links
        self.previews = previews or Previews(partial(thumbnail_jpeg, max_pixels=settings.max_image_pixels,
                                                     budget=settings.decode_budget_bytes))
        self.archive = Path(settings.archive).resolve()
        self.readiness = Readiness(readiness_probe(settings, self.searcher), clock=health_clock)
        self.readiness.start()

    def __call__(self, environ, start_response):
        with logs.ids(request_id=logs.new_id()):  # on every line logged for it (FindimageApp.dispatch keeps it)
            return self._route(environ, start_response)

    def _route(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path in MONITORING_PATHS and method in ("GET", "HEAD"):
            status, content_type, body = monitoring_page(path, self.readiness, self._queued) or ("", "", b"")
            return _reply(start_response, status, content_type, body, [("Cache-Control", "no-store")])
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

    def _queued(self) -> dict[str, int]:
        """What /healthz shows beside the version: the answers queue's length, not cached (a router or an
        operator watches it change)."""
        return {} if self.work is None else {"queued": self.work.pending}

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
        indexed = doc.indexed
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


def build_wsgi_app(settings: Settings, searcher: Searcher | None = None, *, link_clock=time.time,
                   health_clock=time.monotonic, previews: Previews | None = None,
                   work: WorkPool | None = None, seen: SeenKeys | None = None) -> FindimageWsgi:
    """The whole HTTP app; models load here, before the server takes its first request. Every keyword is a
    test's: its clocks, its previews, its answer pool and seen keys (create_app's)."""
    require_http_mode(settings)
    links = ImageLinks.from_settings(settings, clock=link_clock) if settings.public_base_url else None
    bolt_app = create_app(settings, searcher, links=links, work=work, seen=seen)
    return FindimageWsgi(settings, bolt_app, links, previews=previews, health_clock=health_clock)


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

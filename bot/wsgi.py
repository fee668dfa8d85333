"""HTTP mode: one WSGI app for gunicorn (`gunicorn 'bot.wsgi:create()'`, see the Procfile).

Routes: POST /slack/events (Bolt: signature check, slash commands, events), GET /healthz, and with
FINDIMAGE_PUBLIC_BASE_URL set, GET /images/<image_id>.jpg?expires=..&sig=.. (signed archive previews).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote

from slack_bolt.adapter.wsgi import SlackRequestHandler

from findimage.config import ConfigError, load_settings, require_slack
from findimage.imaging import ImageError, thumbnail_jpeg
from findimage.search import Searcher

from .app import configure_logging, create_app
from .image_links import PATH_PREFIX, ImageLinks

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"


class FindimageWsgi:
    def __init__(self, settings, bolt_app, searcher: Searcher, links: ImageLinks | None):
        self.settings = settings
        self.slack = SlackRequestHandler(bolt_app, path=SLACK_PATH)
        self.searcher = searcher
        self.links = links
        self.archive = Path(settings.archive).resolve()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._healthz(start_response)
        if path.startswith(PATH_PREFIX) and method in ("GET", "HEAD") and self.links is not None:
            return self._image(path, environ.get("QUERY_STRING", ""), start_response)
        return self.slack(environ, start_response)

    def _healthz(self, start_response):
        """Up when the models are loaded and the store answers; the platform restarts us otherwise."""
        try:
            documents = self.searcher.store.count()
        except Exception as exc:
            log.warning("health check: store not answering: %s", exc)
            return _reply(start_response, "503 Service Unavailable", "application/json",
                          json.dumps({"status": "store unavailable", "detail": str(exc)[:300]}).encode())
        body = {"status": "ok", "documents": documents, "store": self.searcher.store.description}
        return _reply(start_response, "200 OK", "application/json", json.dumps(body).encode())

    def _image(self, path: str, query_string: str, start_response):
        image_id = unquote(path[len(PATH_PREFIX):]).removesuffix(".jpg")
        query = parse_qs(query_string)
        expires, signature = query.get("expires", [""])[0], query.get("sig", [""])[0]
        if not self.links.is_valid(image_id, expires, signature):
            return _reply(start_response, "403 Forbidden", "text/plain", b"This image link is invalid or expired.\n")
        file = self._archive_file(image_id)
        if file is None:
            return _reply(start_response, "404 Not Found", "text/plain", b"This image is no longer in the archive.\n")
        try:
            data = thumbnail_jpeg(file)
        except ImageError as exc:
            log.warning("cannot serve %s: %s", file, exc)
            return _reply(start_response, "404 Not Found", "text/plain", b"This image cannot be shown.\n")
        return _reply(start_response, "200 OK", "image/jpeg", data, [("Cache-Control", "private, max-age=86400")])

    def _archive_file(self, image_id: str) -> Path | None:
        doc = self.searcher.store.get(image_id)
        if doc is None:
            return None
        file = (self.archive / doc.relative_path).resolve()
        if not file.is_relative_to(self.archive) or not file.is_file():  # never serve outside the archive
            return None
        return file


def _reply(start_response, status: str, content_type: str, body: bytes, headers=()):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]


def build_wsgi_app(settings, searcher: Searcher | None = None, client=None) -> FindimageWsgi:
    """The whole HTTP app; models load here, before the server takes its first request."""
    require_http_mode(settings)
    searcher = searcher or Searcher(settings)
    links = ImageLinks.from_settings(settings) if settings.public_base_url else None
    bolt_app = create_app(settings, searcher, client, image_links=links is not None)
    return FindimageWsgi(settings, bolt_app, searcher, links)


def require_http_mode(settings) -> None:
    require_slack(settings)
    if not settings.slack_signing_secret:
        raise ConfigError(["SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request from Slack with it "
                           "(Basic Information > App Credentials > Signing Secret)."])


def create() -> FindimageWsgi:
    """gunicorn's app factory: settings from the environment and `.env`."""
    configure_logging()
    try:
        settings = load_settings()
        app = build_wsgi_app(settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"findimage: configuration problem: {problem}", file=sys.stderr)
        raise
    mode = f"image links under {app.links.base_url}" if app.links else "uploaded images"
    log.info("findimage bot ready over HTTP (%s)", mode)
    return app

"""GET /metrics, /healthz and /readyz in HTTP mode: findimage.observability's pages, never cached."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from findimage.observability import Readiness, monitoring_page

from .responses import not_found, reply

PATHS = ("/metrics", "/healthz", "/readyz")


class Monitoring:
    """`extra`: what /healthz shows beside the version (the answers queued), asked at every request."""

    def __init__(self, readiness: Readiness, extra: Callable[[], dict[str, int]]):
        self.readiness = readiness
        self.extra = extra

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        page = monitoring_page(environ.get("PATH_INFO", ""), self.readiness, self.extra)
        if page is None:
            return not_found(environ, start_response)
        status, content_type, body = page
        return reply(start_response, status, content_type, body, [("Cache-Control", "no-store")])

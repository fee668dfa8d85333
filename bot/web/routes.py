"""HTTP mode's one WSGI app: every request named, then sent by its method and path to the handler of its
route, one module each:

| Route | Handler |
| --- | --- |
| GET `/metrics`, `/healthz`, `/readyz` | `monitoring.Monitoring` |
| GET `/images/<image_id>.jpg?expires=..&v=..&sig=..` (with FINDIMAGE_PUBLIC_BASE_URL) | `images.SignedImages` |
| POST, any path (the body limit); `/slack/events` for Slack | `slack_events.SlackEvents`, then Bolt |
| anything else | 404 |

gunicorn serves it (bot.server); bot.app builds it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from wsgiref.types import StartResponse, WSGIEnvironment

from findimage import logs

from ..channel_memory import ChannelMemory
from ..image_links import PATH_PREFIX
from ..work import WorkPool
from . import monitoring
from .images import SignedImages
from .monitoring import Monitoring
from .responses import Handler, not_found
from .slack_events import SlackEvents

READS = ("GET", "HEAD")


@dataclass(frozen=True)
class Routes:
    """The handler of every route; `images` only where the bot serves its own image links."""

    slack: SlackEvents
    monitoring: Monitoring
    images: SignedImages | None = None

    def handler(self, method: str, path: str) -> Handler:
        if method in READS and path in monitoring.PATHS:
            return self.monitoring
        if method in READS and self.images is not None and path.startswith(PATH_PREFIX):
            return self.images
        if method == "POST":
            return self.slack
        return not_found


class WebApp:
    """The routes as one WSGI app, and what the web server's shutdown finishes (bot.server): the answers
    queued after their acks (`work`), the remembering of channels (`memory`)."""

    def __init__(self, routes: Routes, work: WorkPool, memory: ChannelMemory | None):
        self.routes = routes
        self.work = work
        self.memory = memory

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with logs.ids(request_id=logs.new_id()):  # on every line logged for it (FindimageApp.dispatch keeps it)
            handler = self.routes.handler(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
            return handler(environ, start_response)

"""What every route answers with: a status, a content type and a body, or one sentence as plain text."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from wsgiref.types import StartResponse, WSGIEnvironment

# A route's handler: a WSGI app of its own (bot.web.routes picks it by method and path).
Handler = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]
Headers = Sequence[tuple[str, str]]


def reply(start_response: StartResponse, status: str, content_type: str, body: bytes,
          headers: Headers = ()) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]


def sentence(start_response: StartResponse, status: str, text: str, headers: Headers = ()) -> list[bytes]:
    return reply(start_response, status, "text/plain; charset=utf-8", f"{text}\n".encode(), headers)


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    return sentence(start_response, "404 Not Found", "Not found.")

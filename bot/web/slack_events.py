"""POST: every body bounded, then `/slack/events` checked as signed by Slack and handed to Bolt.

Slack's signature is checked here and only here: before Bolt parses a byte of the body, with a log line
that never holds the body (whoever forges requests may also send secrets, or junk to fill the log). Bolt's
own check is turned off (bot.app.create_app): it would hash the same bytes a second time, and it logs a
refused body. Socket Mode has no HTTP request to check: its connection is opened with the app token.
"""
from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from .responses import not_found, reply, sentence

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
# Slack's payloads are a few KB (a message event with ten files stays far below 64 KB); anything
# larger is not from Slack and is refused before it is read.
MAX_BODY_BYTES = 256 * 1024
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class BodyRefused(Exception):
    def __init__(self, status: str, sentence: str):
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


class SlackEvents:
    """Every POST: its body read within MAX_BODY_BYTES; on `/slack/events`, signed by Slack, given to Bolt."""

    def __init__(self, app: App, signing_secret: str):
        self.app = app
        self.bolt = SlackRequestHandler(app, path=SLACK_PATH)
        self.verifier = SignatureVerifier(signing_secret)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        try:
            body = read_bounded_body(environ, MAX_BODY_BYTES)
        except BodyRefused as refused:
            log.warning("refused a POST to %s from %s: %s", path, environ.get("REMOTE_ADDR", "?"), refused)
            return sentence(start_response, refused.status, refused.sentence)
        if path != SLACK_PATH:
            return not_found(environ, start_response)
        if not self.signed_by_slack(environ, body):
            log.warning("refused a request without a valid Slack signature from %s (%d bytes)",
                        environ.get("REMOTE_ADDR", "?"), len(body))
            return reply(start_response, "401 Unauthorized", "application/json", b'{"error": "invalid request"}')
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.bolt(environ, start_response)

    def signed_by_slack(self, environ: WSGIEnvironment, body: bytes) -> bool:
        """Slack's signature over this body, made within the last five minutes (slack_sdk's verifier)."""
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            return False
        return self.verifier.is_valid(body, timestamp, signature)


def read_bounded_body(environ: WSGIEnvironment, limit: int) -> bytes:
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

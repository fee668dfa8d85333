"""Shared pieces of the bot tests: the Slack emulator, an indexed archive, and the bot served for real.

Test modules import the fixtures they use from here (`from bot_support import ...`).
"""
from __future__ import annotations

import dataclasses
import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from PIL import Image

from bot.wsgi import build_wsgi_app
from findimage.config import load_settings
from findimage.search import Searcher
from indexer.run import index_once
from slack_emulator import SlackEmulator

CHANNEL = "C0PHOTOS"
ALICE = "U0ALICE"
BOB = "U0BOB"


@pytest.fixture
def emu():
    with SlackEmulator() as emulator:
        yield emulator


def slack_env(emu: SlackEmulator) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
        # Random-weight test models score text against images around 0.5; keep the default presentation
        # (not "uncertain") unless a test asks for it.
        "FINDIMAGE_WEAK_SCORE": "0.3",
    }


@pytest.fixture
def bot_settings(env, emu, archive):
    """Settings of a bot talking to the emulator, over the `archive` fixture's photos (not indexed yet)."""
    return load_settings({**env, **slack_env(emu)}, env_file=None)


@pytest.fixture
def indexed(bot_settings):
    """The archive indexed with the tiny test models into the embedded store."""
    summary = index_once(bot_settings, progress=False)
    assert summary.added == 7 and summary.failed == 0
    return bot_settings


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64  # 20+ commands arrive at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@dataclass
class RunningBot:
    base_url: str
    wsgi: object

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/slack/events"

    @property
    def searcher(self) -> Searcher:
        return self.wsgi.searcher


@contextmanager
def serve_bot(settings, searcher: Searcher | None = None):
    """The bot's real WSGI app (bot.wsgi) on a real threaded HTTP server on a free port."""
    wsgi = build_wsgi_app(settings, searcher)
    server = make_server("127.0.0.1", 0, wsgi, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield RunningBot(f"http://127.0.0.1:{server.server_port}", wsgi)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def bot(indexed):
    """The bot over HTTP, with the indexed archive, uploading matches as images (the default)."""
    with serve_bot(indexed) as running:
        yield running


def with_settings(settings, **changes):
    return dataclasses.replace(settings, **changes)


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def png_bytes(color: str = "red", size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()

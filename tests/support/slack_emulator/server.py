"""The emulator itself: one aiohttp server, in a background thread, standing in for Slack.

``SlackEmulator`` is assembled from mixins, one per area of Slack, that share the
state created in ``SlackEmulator.__init__``:

* ``web_api.WebApiMixin``  – the Web API methods (``/api/<method>``),
* ``history.HistoryMixin`` – channel history: conversations.history / .replies, chat.getPermalink,
* ``seeding.SeedingMixin`` – thousands of messages (some with images) put into a history at once,
* ``ratelimits.RateLimitMixin`` – per-method rate limits on a clock tests can speed up, non-Marketplace limits,
* ``files.FilesMixin``     – hosted files, upload URLs, downloads,
* ``blocks.BlocksMixin``   – Block Kit checks (invalid_blocks), image blocks' slack_file,
* ``driver.DriverMixin``   – Slack calling the app over HTTP, payload builders, response_url,
* ``changes.ChangesMixin`` – files and messages deleted or changed, channels archived or deleted, the bot joining
  or leaving: the state changes and the events Slack sends about them,
* ``socket_mode.SocketModeMixin`` – the Socket Mode WebSocket,
* ``interactivity.InteractivityMixin`` – buttons, shortcuts, the App Home.

Request and response shapes are built from the real payloads in ``tests/fixtures/slack/``
(see ``fixtures``); where Slack's behaviour is undocumented the choice is marked
"emulator choice".
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .blocks import BlocksMixin
from .changes import ChangesMixin
from .driver import DriverMixin
from .files import FilesMixin
from .history import HistoryMixin
from .interactivity import InteractivityMixin
from .ratelimits import RateLimitMixin
from .records import ApiCall, Message, Recorder, ResponsePost, Upload
from .seeding import SeedingMixin
from .socket_mode import SocketModeMixin
from .web_api import SlackApiError, WebApiMixin

DEFAULT_BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:read",
    "users:read",
)


@dataclass
class _MethodSpec:
    handler: Callable[[dict, str], dict]
    token_kinds: tuple
    scope: str | None


class SlackEmulator(WebApiMixin, HistoryMixin, SeedingMixin, RateLimitMixin, FilesMixin, BlocksMixin, DriverMixin,
                    ChangesMixin, SocketModeMixin, InteractivityMixin):
    """A local stand-in for slack.com, files.slack.com, hooks.slack.com and wss-primary.slack.com.

    Use as a context manager (or ``start()`` / ``stop()``) and point the app at it::

        with SlackEmulator() as emu:
            client = WebClient(token=emu.bot_token, base_url=emu.api_url)
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-1-emulated-bot-token",
        app_token: str = "xapp-1-A0APP-1-emulated-app-token",
        signing_secret: str = "emulated-signing-secret",
        verification_token: str = "emulated-verification-token",
        team_id: str = "T0TEAM",
        team_domain: str = "findimage-test",
        team_name: str = "Findimage Test",
        app_id: str = "A0APP",
        bot_id: str = "B0BOT",
        bot_user_id: str = "U0BOT",
        bot_user_name: str = "findimage",
        bot_scopes: Iterable[str] = DEFAULT_BOT_SCOPES,
        host: str = "127.0.0.1",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.app_id = app_id
        self.bot_id = bot_id
        self.bot_user_id = bot_user_id
        self.bot_user_name = bot_user_name
        self.bot_scopes = set(bot_scopes)
        self.host = host
        #: When True, unauthorized file downloads get a 302 to the sign-in page first
        #: (what files.slack.com does); when False, the HTML page comes straight with 200.
        self.files_redirect_to_login = False

        self._lock = threading.RLock()
        self._recorder = Recorder()
        self._last_ts = 0.0
        self._rate_limits: dict = {}  # method -> [remaining, retry_after]
        self._injected_errors: dict = {}  # method -> [remaining, error, status]
        self._methods: dict = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._init_web_api()
        self._init_history()
        self._init_rate_limits()
        self._init_files()
        self._init_driver()
        self._init_socket_mode()
        self._init_interactivity()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Pass as ``WebClient(base_url=...)``."""
        return f"{self.base_url}/api/"

    def start(self) -> SlackEmulator:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        started = threading.Event()
        failure: list = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = web.AppRunner(self._build_app(), shutdown_timeout=0.5, access_log=None)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.SockSite(self._runner, sock).start())
            except BaseException as error:  # pragma: no cover - surfaced to start()
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="slack-emulator", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_sockets(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024**3)  # uploads may be large
        app.router.add_route("*", "/api/{method}", self._handle_api)
        self._add_file_routes(app.router)
        self._add_driver_routes(app.router)
        self._add_socket_mode_routes(app.router)
        return app

    def _run_in_loop(self, coroutine: Any, timeout: float = 5.0) -> Any:
        if self._loop is None:
            raise RuntimeError("the emulator is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # ------------------------------------------------------------------ Web API plumbing

    def register_method(
        self,
        name: str,
        handler: Callable[[dict, str], dict],
        *,
        token_kinds: Iterable[str] = ("bot",),
        scope: str | None = None,
    ) -> None:
        """Add (or replace) a Web API method.

        ``handler(params, token_kind)`` returns the response fields besides ``ok``, or
        raises ``SlackApiError("some_error")``. ``token_kind`` is ``"bot"`` or ``"app"``.
        """
        with self._lock:
            self._methods[name] = _MethodSpec(handler, tuple(token_kinds), scope)

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and ``Retry-After``. (For a limit per minute
        as Slack applies it, see ``limit_rate`` and ``non_marketplace_app``.)"""
        with self._lock:
            self._rate_limits[method] = [times, retry_after]

    def inject_error(self, method: str, error: str, times: int = 1, status: int = 200) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        with self._lock:
            self._injected_errors[method] = [times, error, status]

    def grant_scope(self, scope: str) -> None:
        with self._lock:
            self.bot_scopes.add(scope)

    def revoke_scope(self, scope: str) -> None:
        """E.g. ``revoke_scope("files:read")``: files.info fails, downloads get the login page."""
        with self._lock:
            self.bot_scopes.discard(scope)

    def _token_kind(self, token: str | None) -> str | None:
        if token == self.bot_token:
            return "bot"
        if token == self.app_token:
            return "app"
        return None

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        body_token = params.pop("token", None)
        token = token or body_token
        status, headers, body = self._call_method(method, params, token)
        self._recorder.add("api_calls", ApiCall(method, params, token, status, body, time.monotonic(), dict(headers),
                                                     request.headers.get("User-Agent", "")))
        return web.json_response(body, status=status, headers=headers)

    def _call_method(self, method: str, params: dict, token: str | None) -> tuple:
        with self._lock:
            limited = self._rate_limits.get(method)
            if limited and limited[0] > 0:
                limited[0] -= 1
                return 429, {"Retry-After": str(limited[1])}, {"ok": False, "error": "ratelimited"}
            over_limit = self._rate_limited(method)
            if over_limit:
                return over_limit
            injected = self._injected_errors.get(method)
            if injected and injected[0] > 0:
                injected[0] -= 1
                return injected[2], {}, {"ok": False, "error": injected[1]}
            spec = self._methods.get(method)
            scopes = ",".join(sorted(self.bot_scopes))
        if spec is None:
            # emulator choice: slack.com answers unknown methods with 404 and this body
            return 404, {}, {"ok": False, "error": "unknown_method", "req_method": method}
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        kind = self._token_kind(token)
        if kind is None:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if kind not in spec.token_kinds:
            return 200, {}, {"ok": False, "error": "not_allowed_token_type"}
        headers = {"X-OAuth-Scopes": scopes} if kind == "bot" else {}
        if spec.scope and kind == "bot" and spec.scope not in self.bot_scopes:
            headers["X-Accepted-OAuth-Scopes"] = spec.scope
            body = {"ok": False, "error": "missing_scope", "needed": spec.scope, "provided": scopes}
            return 200, headers, body
        try:
            result = spec.handler(params, kind)
        except SlackApiError as error:
            return 200, headers, {"ok": False, "error": error.error, **error.extra}
        return 200, headers, {"ok": True, **result}

    # ------------------------------------------------------------------ shared helpers

    def _next_ts(self) -> str:
        """A message ts: seconds.microseconds, strictly increasing like Slack's."""
        with self._lock:
            self._last_ts = max(time.time(), self._last_ts + 0.000001)
            return f"{self._last_ts:.6f}"

    def bot_profile(self) -> dict:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_user_name,
            "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
            "deleted": False,
            "updated": 1700000000,
            "team_id": self.team_id,
        }

    # ------------------------------------------------------------------ recordings

    def api_calls(self, method: str | None = None) -> list:
        """Every Web API request, in arrival order (429s and errors included)."""
        return [c for c in self._recorder.get("api_calls") if method is None or c.method == method]

    def rate_limited_calls(self, method: str | None = None) -> list:
        """The Web API requests answered with 429 (``call.retry_after``: the Retry-After they were given)."""
        return [c for c in self.api_calls(method) if c.status == 429]

    def messages(self, channel: str | None = None, thread_ts: str | None = None, ephemeral: bool | None = None) -> list:
        """Messages the app posted (chat.postMessage, and chat.postEphemeral with ``ephemeral=True``)."""
        return [
            m
            for m in self._recorder.get("messages")
            if (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
            and (ephemeral is None or m.ephemeral == ephemeral)
        ]

    def uploads(self, channel: str | None = None, thread_ts: str | None = None) -> list:
        """Completed file uploads (files.completeUploadExternal), in order."""
        return [
            u
            for u in self._recorder.get("uploads")
            if (channel is None or u.channel == channel) and (thread_ts is None or u.thread_ts == thread_ts)
        ]

    def responses(self, url: str | None = None) -> list:
        """POSTs to response URLs (accepted and rejected), in order."""
        return [r for r in self._recorder.get("responses") if url is None or r.url == url]

    def downloads(self, file_id: str | None = None) -> list:
        return [d for d in self._recorder.get("downloads") if file_id is None or d.file_id == file_id]

    def socket_acks(self) -> list:
        return self._recorder.get("socket_acks")

    def clear_records(self) -> None:
        self._recorder.clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str | None = None) -> Any:
        """Poll ``predicate`` (re-run on every new record) until truthy; AssertionError on timeout."""
        return self._recorder.wait_for(predicate, timeout, what)

    def wait_for_message(
        self,
        channel: str | None = None,
        thread_ts: str | None = None,
        *,
        containing: str | None = None,
        ephemeral: bool | None = None,
        timeout: float = 5.0,
    ) -> Message:
        def found() -> Message | None:
            for m in self.messages(channel, thread_ts, ephemeral):
                if containing is None or containing in m.visible_text:
                    return m
            return None

        return self.wait_for(found, timeout, f"a message in {channel or 'any channel'} containing {containing!r}")

    def wait_for_upload(
        self, channel: str | None = None, thread_ts: str | None = None, *, timeout: float = 5.0
    ) -> Upload:
        return self.wait_for(
            lambda: next(iter(self.uploads(channel, thread_ts)), None),
            timeout,
            f"an upload in {channel or 'any channel'}",
        )

    def wait_for_response(
        self, url: str | None = None, *, containing: str | None = None, timeout: float = 5.0
    ) -> ResponsePost:
        def found() -> ResponsePost | None:
            for r in self.responses(url):
                if containing is None or containing in r.visible_text:
                    return r
            return None

        return self.wait_for(found, timeout, f"a response_url post containing {containing!r}")


async def _read_params(request: web.Request) -> dict:
    """Web API arguments, from the query string and a form, multipart or JSON body."""
    params: dict = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        raw = await request.read()
        body = json.loads(raw or b"{}")
        if isinstance(body, dict):
            params.update(body)
        return params
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            params[key] = value.file.read() if hasattr(value, "file") else value
    return params

"""Slack calling the app: signed slash-command and Events API requests, payload builders,
and the response_url webhooks the app answers through.

Shapes: slash commands (https://docs.slack.dev/interactivity/implementing-slash-commands),
the event_callback envelope (https://docs.slack.dev/apis/events-api/#callback-field), message
events and the ``file_share`` subtype (https://docs.slack.dev/reference/events/message/file_share),
request signing (https://docs.slack.dev/authentication/verifying-requests-from-slack).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union
from urllib.parse import urlencode

from aiohttp import web

from .records import ResponsePost, Upload

RESPONSE_URL_MAX_USES = 5  # "up to 5 times within 30 minutes"


def slack_signature(signing_secret: str, timestamp: Union[int, str], body: Union[bytes, str]) -> str:
    """``X-Slack-Signature`` for a request body: ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{body}``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    base = f"v0:{timestamp}:{body}".encode("utf-8")
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HttpDelivery:
    """What the app answered to a request the emulator sent as Slack."""

    status: int
    body: str
    headers: dict
    elapsed: float  # seconds until the app's answer (the ack) was complete
    payload: dict = field(default_factory=dict)  # what was sent (form fields or JSON envelope)

    @property
    def response_url(self) -> Optional[str]:
        return self.payload.get("response_url")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(random.choices(string.ascii_uppercase + string.digits, k=length))


def _rich_text(text: str) -> list:
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
    return [{"type": "rich_text", "block_id": _random_id("", 5).lower(), "elements": [section]}]


class DriverMixin:
    def _init_driver(self) -> None:
        self._response_urls: dict = {}  # path -> {"channel_id", "user_id", "uses"}
        self._authors: dict = {}  # message ts -> user id (for parent_user_id)

    def _add_driver_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/commands/{team}/{number}/{secret}", self._handle_response_url)

    # ------------------------------------------------------------------ payload builders

    def new_response_url(self, channel_id: Optional[str] = None, user_id: Optional[str] = None) -> str:
        path = f"/commands/{self.team_id}/{random.randint(10**12, 10**13 - 1)}/{uuid.uuid4().hex[:24]}"
        with self._lock:
            self._response_urls[path] = {"channel_id": channel_id, "user_id": user_id, "uses": 0}
        return self.base_url + path

    def slash_command_payload(
        self,
        text: str = "",
        command: str = "/findimage",
        user_id: str = "U0USER",
        channel_id: str = "C0CHANNEL",
        *,
        user_name: str = "alice",
        channel_name: str = "general",
        response_url: Optional[str] = None,
        team_id: Optional[str] = None,
    ) -> dict:
        """The fields Slack posts for a slash command (form body over HTTP, dict over Socket Mode).

        ``team_id`` is the workspace of the person who typed the command (emulator choice for users of
        a connected organisation in a Slack Connect channel: their own team id; default the app's).
        """
        return {
            "token": self.verification_token,
            "team_id": team_id or self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self.new_response_url(channel_id, user_id),
            "trigger_id": f"{random.randint(10**9, 10**10)}.{random.randint(10**9, 10**10)}.{uuid.uuid4().hex}",
        }

    def event_callback(self, event: dict, event_id: Optional[str] = None, event_time: Optional[int] = None) -> dict:
        """The Events API envelope around ``event``."""
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or _random_id("Ev"),
            "event_time": event_time or int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": self.is_ext_shared(event.get("channel")),
            "event_context": "4-" + uuid.uuid4().hex,
        }

    def _message_base(self, channel: str, user: Optional[str], text: str, thread_ts: Optional[str], channel_type: str) -> dict:
        ts = self._next_ts()
        event: dict = {"type": "message", "text": text}
        if user:
            event["user"] = user
            self._authors[ts] = user
        event.update(ts=ts, channel=channel, event_ts=ts, channel_type=channel_type)
        if thread_ts:
            event["thread_ts"] = thread_ts
            if self._authors.get(thread_ts):
                event["parent_user_id"] = self._authors[thread_ts]
        return event

    def user_message(
        self,
        channel: str,
        text: str,
        user: str = "U0USER",
        *,
        thread_ts: Optional[str] = None,
        channel_type: str = "channel",
        user_team: Optional[str] = None,
    ) -> dict:
        """A plain ``message`` event: a user typed ``text`` in ``channel``."""
        event = self._message_base(channel, user, text, thread_ts, channel_type)
        event.update(client_msg_id=str(uuid.uuid4()), blocks=_rich_text(text))
        self._set_user_team(event, channel, user_team)
        return event

    def _set_user_team(self, event: dict, channel: str, user_team: Optional[str]) -> None:
        """``team`` of the author; in Slack Connect channels also ``user_team`` and ``source_team``."""
        team = user_team or self.team_id
        event["team"] = team
        if team != self.team_id or self.is_ext_shared(channel):
            event.update(user_team=team, source_team=team)

    def post_user_message_with_files(
        self,
        channel: str,
        files: Iterable[Union[dict, str]],
        text: str = "",
        user: str = "U0USER",
        *,
        thread_ts: Optional[str] = None,
        channel_type: str = "channel",
        file_access: str = "visible",
        user_team: Optional[str] = None,
    ) -> dict:
        """The ``message`` event (subtype ``file_share``) Slack sends when ``user`` posts files.

        ``files`` are file objects from ``add_file`` or file ids; they become shared in
        ``channel``. ``file_access="check_file_info"`` gives the stripped file objects Slack sends
        when the app must call files.info first (e.g. Slack Connect channels). ``user_team``: the
        author's workspace, for users of a connected organisation (default: the app's team).
        """
        event = self._message_base(channel, user, text, thread_ts, channel_type)
        event.update(subtype="file_share", upload=False, display_as_bot=False)
        self._set_user_team(event, channel, user_team)
        event["files"] = self._files_in_event(files, channel, event["ts"], thread_ts, file_access)
        if text:
            event["blocks"] = _rich_text(text)
        return event

    def bot_message_event(
        self,
        channel: str,
        *,
        text: str = "",
        files: Union[Upload, Iterable[Union[dict, str]]] = (),
        thread_ts: Optional[str] = None,
        channel_type: str = "channel",
        with_user: bool = True,
    ) -> dict:
        """The ``message`` event Slack sends about the bot's own post (what the app must ignore).

        With ``files`` (e.g. an ``Upload`` record) it is the ``file_share`` message of the bot's
        upload: ``bot_id`` and ``user`` = the bot user. ``with_user=False`` drops ``user``, as
        some payloads do (Bolt's self-event filter then relies on ``bot_id``).
        """
        if isinstance(files, Upload):
            thread_ts = thread_ts or files.thread_ts
            text = text or files.initial_comment or ""
            files = files.file_objects
        files = list(files)
        event = self._message_base(channel, self.bot_user_id if with_user else None, text, thread_ts, channel_type)
        event.update(bot_id=self.bot_id, app_id=self.app_id, team=self.team_id, bot_profile=self.bot_profile())
        if files:
            event.update(subtype="file_share", upload=True, display_as_bot=False)
            event["files"] = self._files_in_event(files, channel, event["ts"], thread_ts, "visible")
        return event

    def _files_in_event(self, files: Iterable, channel: str, ts: str, thread_ts: Optional[str], access: str) -> list:
        result = []
        for f in files:
            file_id = f["id"] if isinstance(f, dict) else f
            with self._lock:
                stored = self._files[file_id]
            self._share_file(stored, channel, ts, thread_ts)
            if access == "check_file_info":
                obj = {"id": file_id, "mode": "file_access", "file_access": "check_file_info"}
                obj.update(created=stored["created"], timestamp=stored["created"], user=stored["user"])
            else:
                obj = self.file_object(file_id)
                for key in ("shares", "channels", "groups", "ims", "comments_count"):
                    obj.pop(key, None)
            result.append(obj)
        return result

    # ------------------------------------------------------------------ sending to the app over HTTP

    def send_slash_command(
        self,
        app_url: str,
        command: str = "/findimage",
        text: str = "",
        user_id: str = "U0USER",
        channel_id: str = "C0CHANNEL",
        *,
        user_name: str = "alice",
        channel_name: str = "general",
        retry_num: Optional[int] = None,
        signing_secret: Optional[str] = None,
        timestamp: Optional[int] = None,
        timeout: float = 10.0,
        team_id: Optional[str] = None,
    ) -> HttpDelivery:
        """POST a signed slash command to the app, as Slack does; the answer is the app's ack."""
        payload = self.slash_command_payload(
            text, command, user_id, channel_id, user_name=user_name, channel_name=channel_name, team_id=team_id
        )
        headers = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
        body = urlencode(payload).encode("utf-8")
        return self._post_to_app(
            app_url, body, "application/x-www-form-urlencoded", headers, payload, signing_secret, timestamp, timeout
        )

    def send_event(
        self,
        app_url: str,
        event: dict,
        event_id: Optional[str] = None,
        retry_num: Optional[int] = None,
        retry_reason: Optional[str] = None,
        *,
        signing_secret: Optional[str] = None,
        timestamp: Optional[int] = None,
        timeout: float = 10.0,
    ) -> HttpDelivery:
        """POST an Events API ``event_callback`` to the app; pass the same ``event_id`` and a
        ``retry_num`` to replay it as Slack's retry (``X-Slack-Retry-Num`` / ``-Reason`` headers)."""
        envelope = self.event_callback(event, event_id)
        headers = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        body = json.dumps(envelope).encode("utf-8")
        return self._post_to_app(app_url, body, "application/json", headers, envelope, signing_secret, timestamp, timeout)

    def send_url_verification(self, app_url: str, timeout: float = 10.0) -> HttpDelivery:
        """The challenge Slack sends when the Request URL is configured."""
        payload = {"token": self.verification_token, "challenge": uuid.uuid4().hex, "type": "url_verification"}
        body = json.dumps(payload).encode("utf-8")
        return self._post_to_app(app_url, body, "application/json", {}, payload, None, None, timeout)

    def _post_to_app(
        self,
        app_url: str,
        body: bytes,
        content_type: str,
        headers: dict,
        payload: dict,
        signing_secret: Optional[str],
        timestamp: Optional[int],
        timeout: float,
    ) -> HttpDelivery:
        timestamp = int(time.time()) if timestamp is None else timestamp
        secret = self.signing_secret if signing_secret is None else signing_secret
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": slack_signature(secret, timestamp, body),
            **headers,
        }
        request = urllib.request.Request(app_url, data=body, headers=all_headers, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        started = time.monotonic()
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw, response_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, response_headers = error.code, error.read(), dict(error.headers)
        elapsed = time.monotonic() - started
        return HttpDelivery(status, raw.decode("utf-8", "replace"), response_headers, elapsed, payload)

    # ------------------------------------------------------------------ response_url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        with self._lock:
            target = self._response_urls.get(request.path)
            if target is not None:
                target["uses"] += 1
        raw = await request.read()
        try:
            if request.content_type == "application/x-www-form-urlencoded":
                payload = json.loads((await request.post()).get("payload", "{}"))
            else:
                payload = json.loads(raw or b"{}")
        except ValueError:
            payload = None
        # emulator choice for the error statuses/bodies (modelled on incoming webhooks)
        status, answer = 200, "ok"
        if target is None:
            status, answer = 404, "invalid_token"
        elif target["uses"] > RESPONSE_URL_MAX_USES:
            status, answer = 404, "used_url"
        elif not isinstance(payload, dict):
            status, answer = 400, "invalid_payload"
        elif not (payload.get("text") or payload.get("blocks") or payload.get("attachments") or payload.get("delete_original")):
            status, answer = 400, "no_text"
        record = ResponsePost(
            self.base_url + request.path,
            payload if isinstance(payload, dict) else {},
            target and target["channel_id"],
            target and target["user_id"],
            status == 200,
            time.monotonic(),
            self._next_ts() if status == 200 else None,
        )
        self._recorder.add("responses", record)
        return web.Response(status=status, text=answer)

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .fixtures import SLACK_FILE_HOST, SLACK_HOOKS_HOST, fixture, keys_of
from .records import ResponsePost, Upload

RESPONSE_URL_MAX_USES = 5  # "up to 5 times within 30 minutes"
RESPONSE_URL_KINDS = ("commands", "actions", "app")  # hooks.slack.com/<kind>/<team>/<number>/<secret>
OWN_ENVELOPES = ("channel_left", "group_left")  # recorded without event_context (events/channel_left.json)


def slack_signature(signing_secret: str, timestamp: int | str, body: bytes | str) -> str:
    """``X-Slack-Signature`` for a request body: ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{body}``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    base = f"v0:{timestamp}:{body}".encode()
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
    def response_url(self) -> str | None:
        return self.payload.get("response_url")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(random.choices(string.ascii_uppercase + string.digits, k=length))


def _rich_text(text: str) -> list:
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
    return [{"type": "rich_text", "block_id": _random_id("", 5).lower(), "elements": [section]}]


def _trigger_id() -> str:
    return f"{random.randint(10**9, 10**10)}.{random.randint(10**9, 10**10)}.{uuid.uuid4().hex}"


def _event_of(name: str) -> dict:
    return fixture(name)["event"]


#: Keys of a visible file object inside a message event (events/message_file_share.json), thumbnails
#: aside: which of those exist depends on the image's size.
EVENT_FILE_KEYS = tuple(k for k in keys_of("events/message_file_share", "event", "files")
                        if not k.startswith("thumb_") or k == "thumb_tiny")


class DriverMixin:
    def _init_driver(self) -> None:
        self._response_urls: dict = {}  # path -> {"channel_id", "user_id", "uses"}
        self._authors: dict = {}  # message ts -> user id (for parent_user_id)
        self._replies: dict = {}  # (channel, parent ts) -> [(user, ts), ...]

    def _add_driver_routes(self, router: web.UrlDispatcher) -> None:
        for kind in RESPONSE_URL_KINDS:
            router.add_post(f"/{kind}/{{team}}/{{number}}/{{secret}}", self._handle_response_url)

    # ------------------------------------------------------------------ threads

    def _add_reply(self, channel: str, thread_ts: str, user: str, ts: str) -> None:
        with self._lock:
            self._replies.setdefault((channel, thread_ts), []).append((user, ts))
            self._authors.setdefault(ts, user)

    def thread_fields(self, channel: str, ts: str) -> dict:
        """What a message that has replies carries besides its own fields (thread_ts equal to its ts, ...),
        as interactivity/block_actions_thread_parent.json shows; nothing when it has none."""
        with self._lock:
            replies = list(self._replies.get((channel, ts), ()))
        if not replies:
            return {}
        parent = fixture("interactivity/block_actions_thread_parent")["message"]
        users = list(dict.fromkeys(user for user, _ in replies))
        fields = {"thread_ts": ts, "reply_count": len(replies), "reply_users": users,
                  "reply_users_count": len(users), "latest_reply": replies[-1][1]}
        return {key: fields.get(key, parent[key]) for key in parent
                if key in fields or key in ("is_locked", "subscribed")}

    def _in_thread(self, event: dict, channel: str, thread_ts: str | None) -> None:
        """A reply: thread_ts and parent_user_id (events/message_own_bot.json shows both)."""
        if not thread_ts or thread_ts == event["ts"]:
            return
        event["thread_ts"] = thread_ts
        if self._authors.get(thread_ts):
            event["parent_user_id"] = self._authors[thread_ts]
        self._add_reply(channel, thread_ts, event.get("user") or event.get("bot_id"), event["ts"])

    # ------------------------------------------------------------------ payload builders

    def new_response_url(self, channel_id: str | None = None, user_id: str | None = None,
                         kind: str = "commands") -> str:
        """A response_url as Slack hands them out: hooks.slack.com/commands/... for slash commands,
        /actions/... for block_actions, /app/... for shortcuts (here on the emulator's host)."""
        path = f"/{kind}/{self.team_id}/{random.randint(10**12, 10**13 - 1)}/{uuid.uuid4().hex[:24]}"
        self._register_response_url(path, channel_id, user_id)
        return self.base_url + path

    def _register_response_url(self, path: str, channel_id: str | None, user_id: str | None) -> None:
        with self._lock:
            self._response_urls.setdefault(path, {"channel_id": channel_id, "user_id": user_id, "uses": 0})

    def slash_command_payload(
        self,
        text: str = "",
        command: str = "/findimage",
        user_id: str = "U0USER",
        channel_id: str = "C0CHANNEL",
        *,
        user_name: str = "alice",
        channel_name: str = "general",
        response_url: str | None = None,
        team_id: str | None = None,
    ) -> dict:
        """The fields Slack posts for a slash command (commands/slash_command.json; a form body over HTTP,
        a dict over Socket Mode).

        ``team_id`` is the workspace of the person who typed the command (default: the one users.info
        knows them by, the app's unless ``add_user`` said otherwise).
        """
        payload = fixture("commands/slash_command")
        payload.update(
            token=self.verification_token, team_id=team_id or self.user_team(user_id), team_domain=self.team_domain,
            channel_id=channel_id, channel_name=channel_name, user_id=user_id, user_name=user_name,
            command=command, text=text, api_app_id=self.app_id,
            response_url=response_url or self.new_response_url(channel_id, user_id), trigger_id=_trigger_id(),
        )
        return payload

    def _authorization(self) -> dict:
        authorization = fixture("events/message_file_share")["authorizations"][0]
        authorization.update(team_id=self.team_id, user_id=self.bot_user_id)
        return authorization

    def event_callback(self, event: dict, event_id: str | None = None, event_time: int | None = None) -> dict:
        """The Events API envelope around ``event``.

        In a Slack Connect channel it is the envelope of events/message_slack_connect.json: team_id is the
        acting user's workspace, the app's is context_team_id. app_home_opened comes in the envelope of
        events/app_home_opened.json (no event_context).
        """
        channel = event.get("channel")
        shared = self.is_ext_shared(channel)
        if event.get("type") == "app_home_opened":
            envelope = fixture("events/app_home_opened")
        elif event.get("type") in OWN_ENVELOPES:
            envelope = fixture(f"events/{event['type']}")
            envelope["team_id"] = self.team_id
        elif shared:
            envelope = fixture("events/message_slack_connect")
            actor = self.user_record(event.get("user"))
            envelope.update(team_id=actor["team_id"], context_team_id=self.team_id, context_enterprise_id=None)
            if actor["enterprise_id"]:
                envelope["enterprise_id"] = actor["enterprise_id"]
            else:
                envelope.pop("enterprise_id")
        else:
            envelope = fixture("events/message_file_share")
            envelope["team_id"] = self.team_id
        envelope.update(token=self.verification_token, api_app_id=self.app_id, event=event,
                        event_id=event_id or _random_id("Ev"), event_time=event_time or int(time.time()),
                        authorizations=[self._authorization()], is_ext_shared_channel=shared)
        if "event_context" in envelope:
            envelope["event_context"] = "4-" + uuid.uuid4().hex
        return envelope

    def user_message(
        self,
        channel: str,
        text: str,
        user: str = "U0USER",
        *,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        user_team: str | None = None,
    ) -> dict:
        """A plain ``message`` event (events/message.json): a user typed ``text`` in ``channel``.

        ``user_team``: the author's workspace, for users of a connected organisation (users.info then
        says so too; default: the app's)."""
        if user_team:
            self.add_user(user, user_team)
        event = _event_of("events/message")
        ts = self._next_ts()
        event.update(client_msg_id=str(uuid.uuid4()), text=text, user=user, ts=ts, team=self.user_team(user),
                     blocks=_rich_text(text), channel=channel, event_ts=ts, channel_type=channel_type)
        self._authors[ts] = user
        self._in_thread(event, channel, thread_ts)
        self._remember(channel, event)
        return event

    def post_user_message_with_files(
        self,
        channel: str,
        files: Iterable[dict | str],
        text: str = "",
        user: str = "U0USER",
        *,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        file_access: str = "visible",
        user_team: str | None = None,
    ) -> dict:
        """The ``message`` event (subtype ``file_share``, events/message_file_share.json) Slack sends when
        ``user`` posts files: no team on the event, only the user.

        ``files`` are file objects from ``add_file`` or file ids; they become shared in ``channel``. In a
        Slack Connect channel, or with ``file_access="check_file_info"``, they come as the stripped objects of
        events/message_file_share_slack_connect.json (the app must call files.info). ``user_team``: the
        author's workspace, for users of a connected organisation (users.info then says so).
        """
        if user_team:
            self.add_user(user, user_team)
        event = _event_of("events/message_file_share")
        ts = self._next_ts()
        access = "check_file_info" if self.is_ext_shared(channel) else file_access
        event.update(text=text, files=self._files_in_event(files, channel, ts, thread_ts, access), user=user, ts=ts,
                     blocks=_rich_text(text), client_msg_id=str(uuid.uuid4()), channel=channel, event_ts=ts,
                     channel_type=channel_type)
        if not text:
            event.pop("blocks")
        self._authors[ts] = user
        self._in_thread(event, channel, thread_ts)
        self._remember(channel, event)
        return event

    def bot_message_event(
        self,
        channel: str,
        *,
        text: str = "",
        files: Upload | Iterable[dict | str] = (),
        thread_ts: str | None = None,
        channel_type: str = "channel",
        with_user: bool = True,
    ) -> dict:
        """The ``message`` event Slack sends about the bot's own post (what the app must ignore):
        events/message_own_bot.json, or with ``files`` (e.g. an ``Upload`` record) the file_share of its
        upload (events/message_file_share_bot.json). ``with_user=False`` drops ``user`` (Bolt's self-event
        filter then relies on ``bot_id``).
        """
        if isinstance(files, Upload):
            thread_ts = thread_ts or files.thread_ts
            text = text or files.initial_comment or ""
            files = files.file_objects
        event = self._bot_event(channel, text, list(files), thread_ts, channel_type, self.bot_id, self.app_id,
                                self.bot_user_id, self.bot_profile())
        if not with_user:
            event.pop("user")
        return event

    def other_bot_message_event(
        self,
        channel: str,
        *,
        text: str = "",
        files: Iterable[dict | str] = (),
        bot_id: str = "B0OTHER",
        app_id: str = "A0OTHER",
        bot_user_id: str = "U0OTHERBOT",
        thread_ts: str | None = None,
        file_access: str = "visible",
    ) -> dict:
        """Another app's post (events/message_bot_other_app.json), with ``files`` its upload
        (events/message_file_share_bot.json): e.g. a second findimage installed for staging."""
        profile = fixture("events/message_bot_other_app")["event"]["bot_profile"]
        profile.update(id=bot_id, app_id=app_id, team_id=self.team_id)
        return self._bot_event(channel, text, list(files), thread_ts, "channel", bot_id, app_id, bot_user_id,
                               profile, file_access)

    def _bot_event(self, channel, text, files, thread_ts, channel_type, bot_id, app_id, user, profile,
                   file_access: str = "visible") -> dict:
        ts = self._next_ts()
        if files:
            access = "check_file_info" if self.is_ext_shared(channel) else file_access
            event = _event_of("events/message_file_share_bot")
            event.update(text=text, files=self._files_in_event(files, channel, ts, thread_ts, access))
        elif bot_id == self.bot_id:
            event = _event_of("events/message_own_bot")
            event.update(text=text, app_id=app_id, team=self.team_id, blocks=_rich_text(text))
            del event["thread_ts"], event["parent_user_id"]  # set again for a reply
        else:
            event = _event_of("events/message_bot_other_app")
            event.update(text=text, team=self.team_id)
        event.update(bot_id=bot_id, user=user, bot_profile=profile, ts=ts, channel=channel, event_ts=ts,
                     channel_type=channel_type)
        self._authors[ts] = user
        self._in_thread(event, channel, thread_ts)
        if bot_id != self.bot_id:  # the app's own posts are in history since it posted them
            self._remember(channel, event)
        return event

    def _files_in_event(self, files: Iterable, channel: str, ts: str, thread_ts: str | None, access: str) -> list:
        result = []
        for f in files:
            file_id = f["id"] if isinstance(f, dict) else f
            with self._lock:
                stored = self._files[file_id]
            self._share_file(stored, channel, ts, thread_ts)
            result.append(self._event_file(file_id, access))
        return result

    def _event_file(self, file_id: str, access: str = "visible") -> dict:
        """A file object as message events (and history) carry it; ``check_file_info``: the stripped one."""
        if access == "check_file_info":
            # created 0, timestamp 0, user "": Slack hides them too
            return dict(fixture("events/message_file_share_slack_connect")["event"]["files"][0], id=file_id)
        with self._lock:
            extra = set(self._files[file_id]["fields"])
        full = self.file_object(file_id)
        return {k: v for k, v in full.items() if k in EVENT_FILE_KEYS or k.startswith("thumb_") or k in extra}

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
        retry_num: int | None = None,
        signing_secret: str | None = None,
        timestamp: int | None = None,
        timeout: float = 10.0,
        team_id: str | None = None,
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
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        *,
        signing_secret: str | None = None,
        timestamp: int | None = None,
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
        return self._post_to_app(
            app_url, body, "application/json", headers, envelope, signing_secret, timestamp, timeout
        )

    def send_envelope(self, app_url: str, envelope: dict, *, timeout: float = 10.0) -> HttpDelivery:
        """POST an Events API envelope exactly as given (e.g. a fixture, after ``adopt``)."""
        body = json.dumps(envelope).encode("utf-8")
        return self._post_to_app(app_url, body, "application/json", {}, envelope, None, None, timeout)

    def send_command_payload(self, app_url: str, payload: dict, *, timeout: float = 10.0) -> HttpDelivery:
        """POST slash-command fields exactly as given (e.g. commands/slash_command.json, after ``adopt``)."""
        body = urlencode(payload).encode("utf-8")
        return self._post_to_app(app_url, body, "application/x-www-form-urlencoded", {}, payload, None, None, timeout)

    def adopt(self, payload: Any) -> Any:
        """A payload recorded from real Slack, made deliverable here: Slack's file and hook hosts point at
        the emulator, and its response_urls are registered (for the channel and user the payload names)."""
        text = json.dumps(payload).replace(SLACK_FILE_HOST, self.base_url).replace(SLACK_HOOKS_HOST, self.base_url)
        adopted = json.loads(text)
        url = adopted.get("response_url") if isinstance(adopted, dict) else None
        if url:
            channel = adopted.get("channel_id") or (adopted.get("channel") or {}).get("id")
            user = adopted.get("user_id") or (adopted.get("user") or {}).get("id")
            self._register_response_url(url[len(self.base_url):], channel, user)
        return adopted

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
        signing_secret: str | None,
        timestamp: int | None,
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
        elif not (payload.get("text") or payload.get("blocks") or payload.get("attachments")
                  or payload.get("delete_original")):
            status, answer = 400, "no_text"
        elif not self._blocks_accepted(payload.get("blocks")):
            status, answer = 400, "invalid_blocks"
        ts = self._next_ts() if status == 200 else None
        if ts:
            with self._lock:
                self._authors[ts] = self.bot_user_id
            if isinstance(payload, dict) and payload.get("thread_ts"):
                self._add_reply(target["channel_id"], payload["thread_ts"], self.bot_user_id, ts)
        record = ResponsePost(
            self.base_url + request.path,
            payload if isinstance(payload, dict) else {},
            target and target["channel_id"],
            target and target["user_id"],
            status == 200,
            time.monotonic(),
            ts,
        )
        self._recorder.add("responses", record)
        return web.Response(status=status, text=answer)

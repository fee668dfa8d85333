"""Interactivity: users clicking buttons (``block_actions``), message shortcuts (``message_action``),
the App Home (``app_home_opened``, views.publish) and conversations.open.

Shapes: tests/fixtures/slack/interactivity/*.json (block_actions on a message, in a thread, on a thread's
parent and on the Home tab; the message shortcut) and events/app_home_opened*.json, each naming its source;
https://docs.slack.dev/reference/methods/views.publish.
Over HTTP, interaction payloads arrive form-encoded as a single ``payload`` field holding JSON (signed
like every request); over Socket Mode they come in ``interactive`` envelopes.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from .blocks import check_blocks
from .fixtures import fixture
from .records import Message, PublishedView, ResponsePost
from .web_api import SlackApiError

__all__ = ["check_blocks", "find_button", "InteractivityMixin"]

MAX_VIEW_BYTES = 250_000  # views.publish: view_too_large above 250 kB


def _trigger_id() -> str:
    return f"{random.randint(10**9, 10**10)}.{random.randint(10**9, 10**10)}.{uuid.uuid4().hex}"


def find_button(blocks: Any, action_id: str) -> tuple:
    """(block, element) of the button whose action_id is ``action_id``; AssertionError if none."""
    for block in blocks or []:
        for element in block.get("elements") or [] if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return block, element
    raise AssertionError(f"no button {action_id!r} in {json.dumps(blocks)[:500]}")


class InteractivityMixin:
    def _init_interactivity(self) -> None:
        self._views: dict = {}  # user id -> (view id, hash, view)
        self._dm_channels: dict = {}  # user id -> D... channel id
        self.register_method("views.publish", self._api_views_publish)  # no scope: any bot token
        self.register_method("conversations.open", self._api_conversations_open, scope="im:write")

    # ------------------------------------------------------------------ Web API

    def _api_views_publish(self, params: dict, kind: str) -> dict:
        user_id = params.get("user_id")
        raw = params.get("view")
        if not user_id or raw is None:
            raise SlackApiError("invalid_arguments")
        view = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(view, dict) or view.get("type") != "home" or not isinstance(view.get("blocks"), list):
            raise SlackApiError("invalid_arguments")
        if len(json.dumps(view).encode("utf-8")) > MAX_VIEW_BYTES:
            raise SlackApiError("view_too_large")
        check_blocks(view["blocks"], self._slack_file_problem)
        with self._lock:
            view_id = self._views.get(user_id, (f"V{uuid.uuid4().hex[:10].upper()}",))[0]
            view_hash = f"{time.time():.6f}.{uuid.uuid4().hex[:8]}"
            self._views[user_id] = (view_id, view_hash, view)
        self._recorder.add("views", PublishedView(user_id, view, view_id, view_hash, time.monotonic()))
        return {"view": self._view_object(user_id)}

    def _view_object(self, user_id: str) -> dict | None:
        """The Home tab as events and block_actions carry it (the view of events/app_home_opened_view.json)."""
        with self._lock:
            known = self._views.get(user_id)
        if known is None:
            return None
        view_id, view_hash, view = known
        obj = fixture("events/app_home_opened_view")["event"]["view"]
        obj.update(id=view_id, team_id=self.team_id, blocks=view["blocks"],
                   private_metadata=view.get("private_metadata", ""), callback_id=view.get("callback_id", ""),
                   hash=view_hash, root_view_id=view_id, app_id=self.app_id,
                   external_id=view.get("external_id", ""), app_installed_team_id=self.team_id, bot_id=self.bot_id)
        return obj

    def _api_conversations_open(self, params: dict, kind: str) -> dict:
        users = str(params.get("users") or "")
        if not users or "," in users:  # emulator choice: one-to-one conversations only
            raise SlackApiError("invalid_arguments" if users else "users_list_not_supplied")
        return {"channel": {"id": self.dm_channel(users)}}

    def dm_channel(self, user_id: str) -> str:
        """The id of ``user_id``'s direct message conversation with the app (its Messages tab)."""
        with self._lock:
            known = self._dm_channels.get(user_id)
            if known is None:
                known = self._dm_channels[user_id] = "D" + user_id.lstrip("UW")[:9].ljust(9, "0")
                self._conversations.setdefault(known, self._default_conversation(known)).update(
                    kind="im", user=user_id)
            return known

    # ------------------------------------------------------------------ recordings

    def views(self, user_id: str | None = None) -> list:
        return [v for v in self._recorder.get("views") if user_id is None or v.user_id == user_id]

    def wait_for_view(self, user_id: str, *, containing: str | None = None, timeout: float = 5.0) -> PublishedView:
        def found() -> PublishedView | None:
            return next((v for v in reversed(self.views(user_id))
                         if containing is None or containing in v.visible_text), None)

        return self.wait_for(found, timeout, f"a Home tab for {user_id} containing {containing!r}")

    # ------------------------------------------------------------------ payload builders

    def block_actions_payload(
        self,
        source: Message | ResponsePost | PublishedView,
        action_id: str,
        user_id: str = "U0USER",
        *,
        user_name: str = "alice",
    ) -> dict:
        """What Slack sends when ``user_id`` clicks the button ``action_id`` of a message the app posted
        (chat.postMessage or a response_url) or of the Home tab it published.

        Shapes: interactivity/block_actions.json; in a thread block_actions_in_thread.json; on a message
        that has replies block_actions_thread_parent.json (thread_ts equal to its own ts); on the Home tab
        block_actions_home.json. An ephemeral message is not sent back (container.is_ephemeral)."""
        block, element = find_button(source.blocks, action_id)
        user = {"id": user_id, "username": user_name, "name": user_name, "team_id": self.user_team(user_id)}
        if isinstance(source, PublishedView):
            payload = fixture("interactivity/block_actions_home")
            payload.update(
                container={"type": "view", "view_id": source.view_id}, view=self._view_object(source.user_id)
            )
        else:
            payload = fixture("interactivity/block_actions")
            channel = source.channel if isinstance(source, Message) else source.channel_id
            payload["container"].update(message_ts=source.ts, channel_id=channel, is_ephemeral=source.ephemeral)
            payload["message"].update(user=self.bot_user_id, ts=source.ts, bot_id=self.bot_id, app_id=self.app_id,
                                      text=source.text or "", team=self.team_id, blocks=source.blocks)
            if source.thread_ts and source.thread_ts != source.ts:
                payload["container"]["thread_ts"] = source.thread_ts
                payload["message"].update(thread_ts=source.thread_ts,
                                          parent_user_id=self._authors.get(source.thread_ts, user_id))
            else:
                payload["message"].update(self.thread_fields(channel, source.ts))
            payload.update(channel={"id": channel, "name": self._conversation(channel)["name"]},
                           response_url=self.new_response_url(channel, user_id, kind="actions"))
            if source.ephemeral:  # ephemeral messages are not sent back with the payload
                del payload["message"]
        action = payload["actions"][0]
        action.update(action_id=action_id, block_id=block.get("block_id") or uuid.uuid4().hex[:5],
                      text=element.get("text"), type="button", action_ts=f"{time.time():.6f}")
        if "value" in element:
            action["value"] = element["value"]
        else:
            del action["value"]
        payload.update(user=user, api_app_id=self.app_id, token=self.verification_token, trigger_id=_trigger_id(),
                       team={"id": self.team_id, "domain": self.team_domain})
        return payload

    def message_action_payload(
        self,
        message: dict,
        channel: str,
        user_id: str = "U0USER",
        callback_id: str = "find_similar",
        *,
        user_name: str = "alice",
    ) -> dict:
        """A message shortcut used on ``message`` (e.g. an event from ``post_user_message_with_files``):
        interactivity/message_action.json, whose user is only {id, name}."""
        shown = {k: v for k, v in message.items() if k not in ("channel", "event_ts", "channel_type")}
        shown.update(self.thread_fields(channel, message["ts"]))
        payload = fixture("interactivity/message_action")
        payload.update(token=self.verification_token, action_ts=f"{time.time():.6f}",
                       team={"id": self.team_id, "domain": self.team_domain}, user={"id": user_id, "name": user_name},
                       channel={"id": channel, "name": self._conversation(channel)["name"]}, callback_id=callback_id,
                       trigger_id=_trigger_id(), message_ts=message["ts"], message=shown,
                       response_url=self.new_response_url(channel, user_id, kind="app"))
        return payload

    def app_home_opened(self, user_id: str = "U0USER", tab: str = "home") -> dict:
        """The event sent when ``user_id`` opens the app's Home (or Messages) tab: with the published view
        (events/app_home_opened_view.json) once there is one, else events/app_home_opened.json."""
        view = self._view_object(user_id) if tab == "home" else None
        event = fixture("events/app_home_opened_view" if view else "events/app_home_opened")["event"]
        event.update(user=user_id, channel=self.dm_channel(user_id), tab=tab, event_ts=f"{time.time():.6f}")
        if view is not None:
            event["view"] = view
        return event

    # ------------------------------------------------------------------ delivering them

    def send_interaction(self, app_url: str, payload: dict, *, signing_secret: str | None = None,
                         timestamp: int | None = None, timeout: float = 10.0):
        """POST an interaction payload to the app as Slack does: ``payload=<json>``, form-encoded, signed."""
        body = urlencode({"payload": json.dumps(payload)}).encode("utf-8")
        return self._post_to_app(app_url, body, "application/x-www-form-urlencoded", {}, payload,
                                 signing_secret, timestamp, timeout)

    def socket_interaction(self, payload: dict, *, timeout: float = 5.0):
        """Deliver an interaction payload over Socket Mode (an ``interactive`` envelope); returns the ack."""
        return self.wait_for_ack(self.socket_send("interactive", payload), timeout)

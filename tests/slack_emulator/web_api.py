"""Web API methods (https://docs.slack.dev/reference/methods/...), as slack_sdk's WebClient calls them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional

from .records import Message, Upload, UploadedFile


class SlackApiError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": error, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# Retired methods: apps still calling them must notice.
RETIRED_METHODS = ("files.upload",)


def _json_arg(value: Any) -> Any:
    """Arguments such as blocks and files arrive JSON-encoded in forms, as lists in JSON bodies."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackApiError("invalid_arguments") from None
    return value


class WebApiMixin:
    def _init_web_api(self) -> None:
        self.register_method("auth.test", self._api_auth_test, token_kinds=("bot", "app"))
        self.register_method("chat.postMessage", self._api_chat_post_message, scope="chat:write")
        self.register_method("chat.postEphemeral", self._api_chat_post_ephemeral, scope="chat:write")
        self.register_method("files.getUploadURLExternal", self._api_files_get_upload_url, scope="files:write")
        self.register_method("files.completeUploadExternal", self._api_files_complete_upload, scope="files:write")
        self.register_method("files.info", self._api_files_info, scope="files:read")
        self.register_method("conversations.info", self._api_conversations_info)  # scope depends on the type
        self._conversations: dict = {}  # channel id -> fields set by tests (shared, private, ...)
        self.register_method("apps.connections.open", self._api_apps_connections_open, token_kinds=("app",))
        for name in RETIRED_METHODS:
            self.register_method(name, self._api_retired, token_kinds=("bot", "app"))

    def _api_retired(self, params: dict, kind: str) -> dict:
        raise SlackApiError("method_deprecated")

    def _api_auth_test(self, params: dict, kind: str) -> dict:
        common = {"url": f"https://{self.team_domain}.slack.com/", "team": self.team_name, "team_id": self.team_id}
        if kind == "app":
            return {**common, "app_id": self.app_id}
        return {
            **common,
            "user": self.bot_user_name,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    # ------------------------------------------------------------------ chat.*

    def _message_content(self, params: dict) -> tuple:
        channel = params.get("channel")
        if not channel:
            raise SlackApiError("channel_not_found")
        blocks = _json_arg(params["blocks"]) if params.get("blocks") else None
        attachments = _json_arg(params["attachments"]) if params.get("attachments") else None
        text = params.get("text")
        if not text and not blocks and not attachments:
            raise SlackApiError("no_text")
        if blocks is not None and not isinstance(blocks, list):
            raise SlackApiError("invalid_blocks_format")
        from .interactivity import check_blocks  # interactivity imports this module

        check_blocks(blocks)
        return channel, text, blocks, attachments

    def _api_chat_post_message(self, params: dict, kind: str) -> dict:
        channel, text, blocks, attachments = self._message_content(params)
        ts = self._next_ts()
        thread_ts = params.get("thread_ts") or None
        message = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text or "",
            "team": self.team_id,
            "bot_profile": self.bot_profile(),
        }
        if blocks is not None:
            message["blocks"] = blocks
        if attachments is not None:
            message["attachments"] = attachments
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent_user = self._authors.get(thread_ts)
            if parent_user:
                message["parent_user_id"] = parent_user
        self._authors[ts] = self.bot_user_id
        self._recorder.add(
            "messages", Message(channel, ts, text, blocks, thread_ts, False, None, dict(params), time.monotonic())
        )
        return {"channel": channel, "ts": ts, "message": message}

    def _api_chat_post_ephemeral(self, params: dict, kind: str) -> dict:
        channel, text, blocks, _ = self._message_content(params)
        user = params.get("user")
        if not user:
            raise SlackApiError("user_not_in_channel")
        ts = self._next_ts()
        thread_ts = params.get("thread_ts") or None
        self._recorder.add(
            "messages", Message(channel, ts, text, blocks, thread_ts, True, user, dict(params), time.monotonic())
        )
        return {"message_ts": ts}

    # ------------------------------------------------------------------ files.*

    def _api_files_get_upload_url(self, params: dict, kind: str) -> dict:
        filename = params.get("filename")
        try:
            length = int(params.get("length") or 0)
        except ValueError:
            raise SlackApiError("invalid_arguments") from None
        if not filename or length <= 0:
            raise SlackApiError("missing_argument")
        file_id = self._new_file_id()
        upload_key = uuid.uuid4().hex
        with self._lock:
            self._pending_uploads[upload_key] = {
                "file_id": file_id,
                "filename": filename,
                "length": length,
                "alt_txt": params.get("alt_txt"),
                "content": None,
            }
            self._upload_keys_by_file[file_id] = upload_key
        return {"upload_url": f"{self.base_url}/upload/v1/{upload_key}", "file_id": file_id}

    def _api_files_complete_upload(self, params: dict, kind: str) -> dict:
        files = _json_arg(params.get("files") or "")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise SlackApiError("invalid_arguments")
        channel = params.get("channel_id") or None
        if not channel and params.get("channels"):
            channel = str(params["channels"]).split(",")[0]
        thread_ts = params.get("thread_ts") or None
        initial_comment = params.get("initial_comment") or None
        with self._lock:
            pending = []
            for f in files:
                key = self._upload_keys_by_file.get(f["id"])
                upload = self._pending_uploads.get(key) if key else None
                if upload is None or upload["content"] is None:
                    raise SlackApiError("file_not_found")
                pending.append((f, key, upload))
            for _, key, _ in pending:
                del self._pending_uploads[key]
        ts = self._next_ts() if channel else None
        uploaded = []
        for f, _, upload in pending:
            stored = self._store_file(
                upload["content"],
                upload["filename"],
                user=self.bot_user_id,
                title=f.get("title") or upload["filename"],
                file_id=upload["file_id"],
            )
            if channel:
                self._share_file(stored, channel, ts, thread_ts)
            file_object = self.file_object(stored["id"])
            uploaded.append(
                UploadedFile(stored["id"], stored["name"], stored["title"], stored["mimetype"], stored["content"], file_object)
            )
        record = Upload(tuple(uploaded), channel, thread_ts, initial_comment, ts, time.monotonic())
        self._recorder.add("uploads", record)
        return {"files": [u.file for u in uploaded]}

    def _api_files_info(self, params: dict, kind: str) -> dict:
        file_id = params.get("file")
        if not file_id or not self._has_file(file_id):
            raise SlackApiError("file_not_found")
        return {
            "file": self.file_object(file_id),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    # ------------------------------------------------------------------ conversations.*

    def share_channel_externally(self, channel_id: str, team_id: str = "T0PARTNER", *, pending: bool = False) -> None:
        """Make ``channel_id`` a Slack Connect channel shared with ``team_id`` (or one with a pending invitation).

        conversations.info then reports it as shared, and events from it carry
        ``is_ext_shared_channel: true`` in their envelope.
        """
        with self._lock:
            fields = self._conversations.setdefault(channel_id, {})
            if pending:
                fields.update(is_pending_ext_shared=True, pending_shared=[team_id], pending_connected_team_ids=[team_id])
            else:
                fields.update(is_shared=True, is_ext_shared=True, connected_team_ids=[team_id],
                              shared_team_ids=[self.team_id, team_id], conversation_host_id=self.team_id)

    def is_ext_shared(self, channel_id: Optional[str]) -> bool:
        with self._lock:
            return bool(self._conversations.get(channel_id or "", {}).get("is_ext_shared"))

    def conversation_object(self, channel_id: str) -> dict:
        """The conversation object as conversations.info answers it.

        Emulator choice: every well-formed id exists (as chat.postMessage accepts any channel here);
        C... is a public channel, G... a private one, D... a direct message.
        """
        with self._lock:
            fields = dict(self._conversations.get(channel_id, {}))
        if channel_id.startswith("D"):
            base = {"id": channel_id, "created": 1700000000, "is_im": True, "is_org_shared": False,
                    "context_team_id": self.team_id, "updated": 1700000000000, "user": "U0USER",
                    "is_user_deleted": False, "priority": 0}
            base.update(fields)
            return base
        private = channel_id.startswith("G")
        name = fields.pop("name", channel_id.lower())
        base = {
            "id": channel_id, "name": name, "is_channel": not private, "is_group": private, "is_im": False,
            "is_mpim": False, "is_private": private, "created": 1700000000, "is_archived": False,
            "is_general": False, "unlinked": 0, "name_normalized": name, "is_shared": False, "is_frozen": False,
            "is_org_shared": False, "is_pending_ext_shared": False, "pending_shared": [],
            "context_team_id": self.team_id, "updated": 1700000000000, "parent_conversation": None,
            "creator": "U0USER", "is_ext_shared": False, "shared_team_ids": [self.team_id],
            "pending_connected_team_ids": [], "is_member": True,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }
        base.update(fields)
        return base

    def _api_conversations_info(self, params: dict, kind: str) -> dict:
        channel_id = params.get("channel")
        if not channel_id or channel_id[0] not in "CGD":
            raise SlackApiError("channel_not_found")
        needed = {"C": "channels:read", "G": "groups:read", "D": "im:read"}[channel_id[0]]
        with self._lock:
            scopes = set(self.bot_scopes)
        if needed not in scopes:
            raise SlackApiError("missing_scope", needed=needed, provided=",".join(sorted(scopes)))
        return {"channel": self.conversation_object(channel_id)}

    # ------------------------------------------------------------------ apps.connections.open

    def _api_apps_connections_open(self, params: dict, kind: str) -> dict:
        return {"url": self._new_socket_url()}

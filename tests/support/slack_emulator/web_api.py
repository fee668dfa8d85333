"""Web API methods (https://docs.slack.dev/reference/methods/...), as slack_sdk's WebClient calls them."""

from __future__ import annotations

import base64
import bisect
import json
import time
import uuid
from typing import Any

from .fixtures import fixture
from .records import Message, Upload, UploadedFile


class SlackApiError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": error, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# Retired methods: apps still calling them must notice.
RETIRED_METHODS = ("files.upload",)

#: conversations.info needs the scope of the conversation's kind, whatever its id looks like (a private
#: channel created since 2021 has a C... id like a public one).
CONVERSATION_SCOPES = {"public": "channels:read", "private": "groups:read", "im": "im:read", "mpim": "mpim:read"}
#: users.conversations' ``types`` and the conversation kinds they list; its limit: default 100, maximum 999 (a
#: larger limit is capped to it, an emulator choice as for conversations.history)
LISTED_TYPES = {"public_channel": "public", "private_channel": "private", "mpim": "mpim", "im": "im"}
USERS_CONVERSATIONS_LIMIT = (100, 999)
DEFAULT_LOCALE = "en-US"  # a user no test gave a language: Slack's default


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
        self.register_method("conversations.info", self._api_conversations_info)  # scope depends on the kind
        self.register_method("users.info", self._api_users_info, scope="users:read")
        self.register_method("users.conversations", self._api_users_conversations)  # scopes by the types asked for
        self._conversations: dict = {}  # channel id -> {"kind", "member", "user", "name", "shared_with", "pending"}
        self._users: dict = {}  # user id -> {"team_id", "name", "is_bot", "enterprise_id"}
        self._unknown_users: set = set()  # users.info answers user_not_found
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
        from .blocks import check_blocks  # blocks imports this module

        check_blocks(blocks, self._slack_file_problem)
        return channel, text, blocks, attachments

    def _check_can_post(self, channel: str) -> None:
        """Where the bot is not a member Slack refuses posts: not_in_channel in a public channel (without
        chat:write.public), channel_not_found where it cannot even see the conversation."""
        conversation = self._conversation(channel)
        if conversation["deleted"]:
            raise SlackApiError("channel_not_found")
        if not conversation["member"]:
            raise SlackApiError("not_in_channel" if conversation["kind"] == "public" else "channel_not_found")
        if conversation["archived"]:
            raise SlackApiError("is_archived")  # chat.postMessage's error; emulator choice for uploads

    def _api_chat_post_message(self, params: dict, kind: str) -> dict:
        channel, text, blocks, attachments = self._message_content(params)
        self._check_can_post(channel)
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
            self._add_reply(channel, thread_ts, self.bot_user_id, ts)
        self._authors[ts] = self.bot_user_id
        self._remember(channel, message)
        self._recorder.add(
            "messages", Message(channel, ts, text, blocks, thread_ts, False, None, dict(params), time.monotonic())
        )
        return {"channel": channel, "ts": ts, "message": message}

    def _api_chat_post_ephemeral(self, params: dict, kind: str) -> dict:
        channel, text, blocks, _ = self._message_content(params)
        self._check_can_post(channel)
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
        if channel:
            self._check_can_post(channel)
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
        if channel and thread_ts:
            self._add_reply(channel, thread_ts, self.bot_user_id, ts)
        elif ts:
            self._authors[ts] = self.bot_user_id
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
                UploadedFile(
                    stored["id"], stored["name"], stored["title"], stored["mimetype"], stored["content"], file_object
                )
            )
        if channel and ts:
            self._remember_upload(channel, ts, thread_ts, initial_comment or "", [u.id for u in uploaded])
        record = Upload(tuple(uploaded), channel, thread_ts, initial_comment, ts, time.monotonic())
        self._recorder.add("uploads", record)
        return {"files": [u.file for u in uploaded]}

    def _api_files_info(self, params: dict, kind: str) -> dict:
        file_id = params.get("file")
        if not file_id or not self._has_file(file_id):
            raise SlackApiError("file_not_found")
        gone = self._file_gone(file_id)
        if gone:
            raise SlackApiError(gone)
        answer = fixture("web_api/files.info")
        answer.pop("ok")
        answer.update(file=self.file_object(file_id), comments=[], response_metadata={"next_cursor": ""})
        return answer

    # ------------------------------------------------------------------ conversations.*

    def add_conversation(self, channel_id: str, kind: str = "public", *, member: bool = True,
                         user: str | None = None, name: str | None = None) -> None:
        """Make ``channel_id`` a conversation of ``kind`` (public, private, im, mpim), with the bot a member or not.

        Where the bot is not a member, conversations.info answers channel_not_found unless the channel is
        public, and posting there (chat.postMessage, chat.postEphemeral, sharing an upload) is refused.
        """
        if kind not in CONVERSATION_SCOPES:
            raise ValueError(f"unknown conversation kind {kind!r}")
        with self._lock:
            known = self._conversations.setdefault(channel_id, self._default_conversation(channel_id))
            known.update(kind=kind, member=member)
            if user is not None:
                known["user"] = user
            if name is not None:
                known["name"] = name

    def remove_bot_from(self, channel_id: str) -> None:
        """The bot leaves (or was never invited to) ``channel_id``."""
        with self._lock:
            self._conversations.setdefault(channel_id, self._default_conversation(channel_id))["member"] = False

    def _default_conversation(self, channel_id: str) -> dict:
        """Emulator choice for ids no test declared: C... a public channel, G... a private one (the ids of
        private channels created before 2021), D... a direct message; the bot is a member of each."""
        kind = {"G": "private", "D": "im"}.get(channel_id[:1], "public")
        return {"kind": kind, "member": True, "user": "U0USER", "name": channel_id.lower(), "shared_with": None,
                "pending": False, "archived": False, "deleted": False}

    def _conversation(self, channel_id: str | None) -> dict:
        with self._lock:
            known = self._conversations.get(channel_id or "")
            return dict(known) if known else self._default_conversation(channel_id or "")

    def share_channel_externally(self, channel_id: str, team_id: str = "T0PARTNER", *, pending: bool = False) -> None:
        """Make ``channel_id`` a Slack Connect channel shared with ``team_id`` (or one with a pending invitation).

        conversations.info then reports it as shared; events from a shared (not pending) channel carry
        ``is_ext_shared_channel: true`` and stripped file objects, as Slack Connect hides files from apps.
        """
        with self._lock:
            known = self._conversations.setdefault(channel_id, self._default_conversation(channel_id))
            known.update(shared_with=team_id, pending=pending)

    def is_ext_shared(self, channel_id: str | None) -> bool:
        conversation = self._conversation(channel_id)
        return bool(conversation["shared_with"] and not conversation["pending"])

    def conversation_object(self, channel_id: str) -> dict:
        """The conversation object as conversations.info answers it (web_api/conversations.info*.json)."""
        c = self._conversation(channel_id)
        if c["kind"] == "im":
            channel = fixture("web_api/conversations.info_im")["channel"]
            channel.update(id=channel_id, context_team_id=self.team_id, user=c["user"])
            channel["latest"].update(user=self.bot_user_id, bot_id=self.bot_id, app_id=self.app_id, team=self.team_id,
                                     bot_profile=self.bot_profile())
            return channel
        if c["shared_with"] and not c["pending"]:
            channel = fixture("web_api/conversations.info_shared")["channel"]
            channel.update(conversation_host_id=self.team_id)
        else:
            channel = fixture("web_api/conversations.info")["channel"]
            channel.update(shared_team_ids=[self.team_id])
            if c["pending"]:
                channel.update(is_pending_ext_shared=True, pending_shared=[c["shared_with"]],
                               pending_connected_team_ids=[c["shared_with"]])
        # https://api.slack.com/types/conversation: is_group only for private channels created before 2021 (G...)
        old_group = c["kind"] == "private" and channel_id.startswith("G")
        channel.update(id=channel_id, name=c["name"], name_normalized=c["name"],
                       is_private=c["kind"] != "public", is_channel=c["kind"] != "mpim" and not old_group,
                       is_group=old_group, is_mpim=c["kind"] == "mpim", context_team_id=self.team_id,
                       creator="U0USER", is_member=c["member"], is_archived=c["archived"])
        return channel

    def _api_conversations_info(self, params: dict, kind: str) -> dict:
        channel_id = params.get("channel")
        if not channel_id or channel_id[0] not in "CGD":
            raise SlackApiError("channel_not_found")
        conversation = self._conversation(channel_id)
        if conversation["deleted"]:
            raise SlackApiError("channel_not_found")
        needed = CONVERSATION_SCOPES[conversation["kind"]]
        with self._lock:
            scopes = set(self.bot_scopes)
        if needed not in scopes:
            raise SlackApiError("missing_scope", needed=needed, provided=",".join(sorted(scopes)))
        if not conversation["member"] and conversation["kind"] != "public":
            raise SlackApiError("channel_not_found")  # private channels and DMs the bot is not in
        return {"channel": self.conversation_object(channel_id)}

    def listed_conversation(self, channel_id: str) -> dict:
        """The limited conversation object users.conversations lists (web_api/users.conversations*.json): no
        is_member, no num_members."""
        c = self._conversation(channel_id)
        if c["kind"] == "im":
            listed = fixture("web_api/users.conversations_mixed")["channels"][1]
            listed.update(id=channel_id, user=c["user"])
            return listed
        if c["kind"] == "mpim":
            listed = fixture("web_api/users.conversations_mixed")["channels"][0]
            listed.update(id=channel_id, name=c["name"], name_normalized=c["name"], is_archived=c["archived"])
            return listed
        listed = fixture("web_api/users.conversations")["channels"][0]
        old_group = c["kind"] == "private" and channel_id.startswith("G")  # as conversation_object
        shared, pending = bool(c["shared_with"] and not c["pending"]), bool(c["shared_with"] and c["pending"])
        listed.update(id=channel_id, name=c["name"], name_normalized=c["name"], is_general=False, creator="U0USER",
                      is_private=c["kind"] != "public", is_channel=not old_group, is_group=old_group,
                      is_archived=c["archived"], is_shared=shared, is_ext_shared=shared, is_pending_ext_shared=pending,
                      pending_shared=[c["shared_with"]] if pending else [])
        return listed

    def _api_users_conversations(self, params: dict, kind: str) -> dict:
        """The conversations the bot is a member of, by id (the ``user`` argument is not emulated). Each type
        asked for needs its kind's scope (emulator choice: the first one missing is named)."""
        types = [t.strip() for t in str(params.get("types") or "public_channel").split(",") if t.strip()]
        if not types or any(t not in LISTED_TYPES for t in types):
            raise SlackApiError("invalid_types")
        kinds = {LISTED_TYPES[t] for t in types}
        with self._lock:
            scopes = set(self.bot_scopes)
        for needed in (CONVERSATION_SCOPES[LISTED_TYPES[t]] for t in types):
            if needed not in scopes:
                raise SlackApiError("missing_scope", needed=needed, provided=",".join(sorted(scopes)))
        without_archived = str(params.get("exclude_archived", "")).lower() in ("1", "true")
        with self._lock:
            ids = sorted(channel_id for channel_id, c in self._conversations.items()
                         if c["member"] and not c["deleted"] and c["kind"] in kinds
                         and not (without_archived and c["archived"]))
        start = 0
        if params.get("cursor"):
            try:
                decoded = base64.b64decode(str(params["cursor"]).encode(), validate=True).decode()
                prefix, _, first = decoded.partition(":")
            except ValueError:
                raise SlackApiError("invalid_cursor") from None
            if prefix not in ("team", "im_id") or not first:
                raise SlackApiError("invalid_cursor")
            start = bisect.bisect_left(ids, first)
        limit = self.page_size(params, *USERS_CONVERSATIONS_LIMIT)
        page, rest = ids[start:start + limit], ids[start + limit:]
        answer = fixture("web_api/users.conversations")
        answer.pop("ok")
        answer["channels"] = [self.listed_conversation(channel_id) for channel_id in page]
        # On the last page an empty next_cursor (clients stop at an empty or missing one; emulator choice of the two).
        cursor = f"{'im_id' if rest and rest[0].startswith('D') else 'team'}:{rest[0]}" if rest else ""
        answer["response_metadata"] = {"next_cursor": base64.b64encode(cursor.encode()).decode() if cursor else ""}
        return answer

    # ------------------------------------------------------------------ users.*

    def add_user(self, user_id: str, team_id: str | None = None, *, name: str | None = None,
                 is_bot: bool = False, enterprise_id: str | None = None, locale: str = DEFAULT_LOCALE) -> None:
        """A person (or bot user) users.info knows; ``team_id``: their workspace (default the app's);
        ``locale``: their Slack language, as users.info tells it with include_locale (an IETF tag)."""
        with self._lock:
            self._users[user_id] = {"team_id": team_id or self.team_id, "name": name or user_id.lower(),
                                    "is_bot": is_bot, "enterprise_id": enterprise_id, "locale": locale}
            self._unknown_users.discard(user_id)

    def forget_user(self, user_id: str) -> None:
        """users.info answers user_not_found for ``user_id`` (e.g. a user the bot may not see)."""
        with self._lock:
            self._unknown_users.add(user_id)

    def user_record(self, user_id: str | None) -> dict:
        """Emulator choice: a user no test declared is a member of the app's workspace."""
        with self._lock:
            known = self._users.get(user_id or "")
            return dict(known) if known else {"team_id": self.team_id, "name": (user_id or "").lower(),
                                              "is_bot": user_id == self.bot_user_id, "enterprise_id": None,
                                              "locale": DEFAULT_LOCALE}

    def user_team(self, user_id: str | None) -> str:
        return self.user_record(user_id)["team_id"]

    def user_object(self, user_id: str, include_locale: bool = False) -> dict:
        """The user object as users.info answers it (web_api/users.info.json); with ``include_locale`` it
        carries the user's ``locale`` (https://api.slack.com/methods/users.info: "Set this to true to receive
        the locale for this user"; the user object's `locale`, e.g. "en-US")."""
        record = self.user_record(user_id)
        user = fixture("web_api/users.info")["user"]
        user.update(id=user_id, team_id=record["team_id"], name=record["name"], real_name=record["name"].title(),
                    is_bot=record["is_bot"], is_admin=False)
        user["profile"].update(team=record["team_id"], real_name=record["name"].title(),
                               real_name_normalized=record["name"].title(), display_name=record["name"],
                               display_name_normalized=record["name"], email=f"{record['name']}@example.org")
        if record["team_id"] != self.team_id:
            user["is_stranger"] = True  # a user of a foreign workspace party to a shared channel
        if include_locale:
            user["locale"] = record["locale"]
        return user

    def _api_users_info(self, params: dict, kind: str) -> dict:
        user_id = params.get("user")
        with self._lock:
            unknown = user_id in self._unknown_users
        if not user_id or unknown or user_id[0] not in "UWB":
            raise SlackApiError("user_not_found")
        include_locale = str(params.get("include_locale", "")).lower() in ("1", "true")
        return {"user": self.user_object(user_id, include_locale)}

    # ------------------------------------------------------------------ apps.connections.open

    def _api_apps_connections_open(self, params: dict, kind: str) -> dict:
        return {"url": self._new_socket_url()}

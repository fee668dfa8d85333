"""Channel history: conversations.history, conversations.replies, chat.getPermalink, and seeding many messages.

Every message the emulator knows in a channel is kept here: users' messages and posted files (``user_message``,
``post_user_message_with_files``, ``seed_history`` in ``seeding``), other bots' posts, and what the app posted
(chat.postMessage, files.completeUploadExternal with a channel). Not kept: ephemeral messages, response_url posts,
the echoes ``bot_message_event`` builds of the app's own posts (the post itself is kept), and the system messages
(channel_join, channel_archive...) Slack also writes into history (not emulated).

Shapes: web_api/conversations.history.json (https://docs.slack.dev/reference/methods/conversations.history),
web_api/chat.getPermalink.json, conversations.replies as https://docs.slack.dev/reference/methods/conversations.replies
shows it. A message is the message event without the fields the Events API adds (channel, event_ts, channel_type);
its files are the file objects of the file_share event, rendered when read: a deleted file is a tombstone
``{"id", "mode": "tombstone"}`` (emulator choice: the shape real clients check for, e.g. Terrance/IMMP
immp/plug/slack.py; Slack's docs do not show it), a hidden one the stripped ``check_file_info`` object.
"""

from __future__ import annotations

import base64
import bisect
import copy as copying
from typing import Any

from .fixtures import fixture
from .web_api import SlackApiError

#: conversations.history and .replies need the history scope of the conversation's kind
HISTORY_SCOPES = {"public": "channels:history", "private": "groups:history", "im": "im:history",
                  "mpim": "mpim:history"}
EVENT_ONLY_KEYS = ("channel", "event_ts", "channel_type")  # what the Events API adds to a message
#: conversations.history's limit: default, maximum ("Maximum of 999"; a larger limit is capped to it, an emulator
#: choice: the docs do not say what Slack does with one)
HISTORY_LIMIT = (100, 999)
REPLIES_LIMIT = (1000, 1000)  # conversations.replies' limit: default 1000 (its docs give no other maximum)


def ts_key(ts: str) -> int:
    """A message ts as an integer of microseconds (ts strings do not sort as text); ValueError if not one."""
    seconds, _, fraction = str(ts).strip().partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a Slack timestamp: {ts!r}")
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def key_ts(key: int) -> str:
    return f"{key // 1_000_000}.{key % 1_000_000:06d}"


def _cursor(key: int) -> str:
    """Slack's cursor format: base64 of ``next_ts:<ts without the dot>`` (the docs' example decodes to that)."""
    return base64.b64encode(f"next_ts:{key // 1_000_000}{key % 1_000_000:06d}".encode()).decode()


def _cursor_key(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        digits = text.removeprefix("next_ts:")
        if not text.startswith("next_ts:") or not digits.isdigit() or len(digits) < 7:
            raise ValueError(cursor)
        return int(digits)
    except ValueError:
        raise SlackApiError("invalid_cursor") from None


class HistoryMixin:
    def _init_history(self) -> None:
        #: channel -> {"top": sorted keys of top-level messages, "threads": {parent key: sorted reply keys},
        #: "records": {key: message}}; a message's "files" holds (file id, access) pairs until rendered
        self._history: dict = {}
        self.register_method("conversations.history", self._api_conversations_history)  # scope by kind
        self.register_method("conversations.replies", self._api_conversations_replies)  # scope by kind
        self.register_method("chat.getPermalink", self._api_chat_get_permalink)  # "no_scope_required"

    # ------------------------------------------------------------------ the store

    def _remember(self, channel: str, message: dict, *, copy: bool = True) -> None:
        """Keep ``message`` (an event or a posted message) in ``channel``'s history."""
        kept = {k: (copying.deepcopy(v) if copy else v) for k, v in message.items() if k not in EVENT_ONLY_KEYS}
        if isinstance(kept.get("files"), list):
            kept["files"] = [(f["id"], "check_file_info" if f.get("file_access") == "check_file_info" else "visible")
                             for f in kept["files"]]
        key = ts_key(kept["ts"])
        with self._lock:
            store = self._history.setdefault(channel, {"top": [], "threads": {}, "records": {}})
            if key in store["records"]:
                return
            store["records"][key] = kept
            thread_ts = kept.get("thread_ts")
            keys = store["threads"].setdefault(ts_key(thread_ts), []) if thread_ts and thread_ts != kept["ts"] \
                else store["top"]
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                bisect.insort(keys, key)

    def _forget(self, channel: str, ts: str) -> dict | None:
        """Remove a message from history; returns it as history showed it (None if unknown)."""
        message = self.history_message(channel, ts)
        if message is None:
            return None
        key = ts_key(ts)
        with self._lock:
            store = self._history[channel]
            del store["records"][key]
            thread_ts = message.get("thread_ts")
            is_reply = bool(thread_ts) and thread_ts != ts
            keys = store["threads"].get(ts_key(thread_ts), []) if is_reply else store["top"]
            if key in keys:
                keys.remove(key)
            if is_reply:
                replies = self._replies.get((channel, thread_ts), [])
                self._replies[(channel, thread_ts)] = [r for r in replies if r[1] != ts]
        return message

    def _history_record(self, channel: str, ts: str) -> dict | None:
        with self._lock:
            return self._history.get(channel, {}).get("records", {}).get(ts_key(ts))

    def history_message(self, channel: str, ts: str) -> dict | None:
        """The message ``ts`` of ``channel`` as conversations.history (or .replies) shows it now (None if the
        emulator knows no such message)."""
        record = self._history_record(channel, ts)
        return copying.deepcopy(self._render(channel, record)) if record else None

    def history(self, channel: str) -> list:
        """Every top-level message of ``channel``, newest first, as conversations.history shows them."""
        with self._lock:
            store = self._history.get(channel, {"top": [], "records": {}})
            records = [store["records"][k] for k in reversed(store["top"])]
        return copying.deepcopy([self._render(channel, r) for r in records])

    def _render(self, channel: str, record: dict) -> dict:
        message = dict(record)
        if isinstance(message.get("files"), list):
            message["files"] = [self._history_file(file_id, access) for file_id, access in message["files"]]
        if not message.get("thread_ts") or message["thread_ts"] == message["ts"]:
            message.update(self.thread_fields(channel, message["ts"]))
        return message

    def _history_file(self, file_id: str, access: str) -> dict:
        gone = self._file_gone(file_id)
        if gone == "file_deleted":
            return {"id": file_id, "mode": "tombstone"}
        return self._event_file(file_id, "check_file_info" if gone else access)

    def _remember_upload(self, channel: str, ts: str, thread_ts: str | None, text: str, file_ids: list) -> None:
        """The file_share message files.completeUploadExternal posted for the app (events/message_file_share_bot)."""
        message = fixture("events/message_file_share_bot")["event"]
        message.update(text=text, files=[{"id": f} for f in file_ids], user=self.bot_user_id, bot_id=self.bot_id,
                       bot_profile=self.bot_profile(), ts=ts)
        if thread_ts:
            message.update(thread_ts=thread_ts, parent_user_id=self._authors.get(thread_ts, self.bot_user_id))
        self._remember(channel, message, copy=False)

    # ------------------------------------------------------------------ Web API

    def _readable_history(self, params: dict) -> str:
        """The channel whose history the bot may read, or SlackApiError as Slack answers."""
        channel = params.get("channel")
        if not channel or channel[0] not in "CGD":
            raise SlackApiError("channel_not_found")
        conversation = self._conversation(channel)
        if conversation.get("deleted"):
            raise SlackApiError("channel_not_found")
        needed = HISTORY_SCOPES[conversation["kind"]]
        with self._lock:
            scopes = set(self.bot_scopes)
        if needed not in scopes:
            raise SlackApiError("missing_scope", needed=needed, provided=",".join(sorted(scopes)))
        if not conversation["member"]:
            # "not_in_channel: ... Only user tokens can access public channels they are not in."
            raise SlackApiError("not_in_channel" if conversation["kind"] == "public" else "channel_not_found")
        return channel

    @staticmethod
    def _range(params: dict) -> tuple:
        """(lowest, highest) keys allowed by oldest / latest / inclusive (both bounds included)."""
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        low, high = 0, None
        for name, error in (("oldest", "invalid_ts_oldest"), ("latest", "invalid_ts_latest")):
            if params.get(name) in (None, ""):
                continue
            try:
                key = ts_key(str(params[name]))
            except ValueError:
                raise SlackApiError(error) from None
            if name == "oldest":
                low = key if inclusive else key + 1
            else:
                high = key if inclusive else key - 1
        return low, high

    def _page(self, keys: list, params: dict, limit: int, newest_first: bool) -> tuple:
        """(keys of the page, cursor of the next page or None) among the sorted ``keys``."""
        low, high = self._range(params)
        start = bisect.bisect_left(keys, low)
        end = len(keys) if high is None else bisect.bisect_right(keys, high)
        if params.get("cursor"):
            at = _cursor_key(str(params["cursor"]))
            if newest_first:
                end = min(end, bisect.bisect_right(keys, at))
            else:
                start = max(start, bisect.bisect_left(keys, at))
        window = keys[start:end]
        if newest_first:
            window = window[::-1]
        page, rest = window[:limit], window[limit:]
        return page, (_cursor(rest[0]) if rest else None)

    def _answer(self, template: str, params: dict, messages: list, cursor: str | None) -> dict:
        answer = fixture(template)
        answer.pop("ok")
        echoed = {name: str(params[name]) for name in ("oldest", "latest") if params.get(name) not in (None, "")}
        answer = {**echoed, **answer, "messages": messages, "has_more": cursor is not None}
        if cursor:
            answer["response_metadata"] = {"next_cursor": cursor}
        else:
            answer.pop("response_metadata", None)
        return answer

    def _api_conversations_history(self, params: dict, kind: str) -> dict:
        channel = self._readable_history(params)
        limit = self.page_size(params, *HISTORY_LIMIT)
        with self._lock:
            store = self._history.get(channel, {"top": [], "records": {}})
            page, cursor = self._page(store["top"], params, limit, newest_first=True)
            records = [store["records"][k] for k in page]
        return self._answer("web_api/conversations.history", params, [self._render(channel, r) for r in records],
                            cursor)

    def _api_conversations_replies(self, params: dict, kind: str) -> dict:
        """The thread of ``ts`` (its parent or one of its replies): the parent, then the replies, oldest first."""
        channel = self._readable_history(params)
        try:
            message = self._history_record(channel, str(params.get("ts") or ""))
        except ValueError:
            message = None
        if message is None:
            raise SlackApiError("thread_not_found")
        parent = ts_key(message.get("thread_ts") or message["ts"])
        limit = self.page_size(params, *REPLIES_LIMIT)
        with self._lock:
            store = self._history[channel]
            keys = ([parent] if parent in store["records"] else []) + list(store["threads"].get(parent, []))
            page, cursor = self._page(keys, params, limit, newest_first=False)
            records = [store["records"][k] for k in page]
        answer = self._answer("web_api/conversations.history", params, [self._render(channel, r) for r in records],
                              cursor)
        for only_in_history in ("pin_count", "channel_actions_ts", "channel_actions_count"):
            answer.pop(only_in_history)
        return answer

    def permalink(self, channel: str, ts: str) -> str:
        """What chat.getPermalink answers for the message ``ts`` of ``channel``."""
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        message = self.history_message(channel, ts) or {}
        thread_ts = message.get("thread_ts")
        return f"{link}?thread_ts={thread_ts}&cid={channel}" if thread_ts and thread_ts != ts else link

    def _api_chat_get_permalink(self, params: dict, kind: str) -> dict:
        channel, ts = params.get("channel"), params.get("message_ts")
        conversation = self._conversation(channel)
        if not channel or channel[0] not in "CGD" or conversation.get("deleted") or (
                not conversation["member"] and conversation["kind"] != "public"):
            raise SlackApiError("channel_not_found")
        try:
            known = bool(ts) and self.history_message(channel, str(ts)) is not None
        except ValueError:
            known = False
        if not known:
            raise SlackApiError("message_not_found")
        answer: Any = fixture("web_api/chat.getPermalink")
        answer.pop("ok")
        answer.update(channel=channel, permalink=self.permalink(channel, str(ts)))
        return answer

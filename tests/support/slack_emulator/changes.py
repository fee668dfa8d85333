"""Things that change after the fact: files deleted or changed, messages deleted or edited, channels archived or
deleted, the bot joining or leaving. Each method changes the emulator's state as Slack would and returns the event
Slack sends about it, for ``send_event`` / ``socket_event``.

Shapes: tests/fixtures/slack/events/*.json (member_joined_channel, which the bot does not subscribe to, in
events_pending/), each naming its source; tests/integration/bot/test_fixture_replay.py replays them to the bot.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from .fixtures import fixture

#: the channel_type of message events (https://docs.slack.dev/reference/events/message)
MESSAGE_CHANNEL_TYPES = {"public": "channel", "private": "group", "im": "im", "mpim": "mpim"}
#: member_joined_channel / member_left_channel: "C - typically a public channel, G - private channels"
MEMBER_CHANNEL_TYPES = {"public": "C", "private": "G", "mpim": "G", "im": "D"}


def _event(name: str) -> dict:
    # events/: events the bot does not subscribe to (member_joined_channel), kept for their shape
    folder = "events_pending" if name == "member_joined_channel" else "events"
    return fixture(f"{folder}/{name}")["event"]


class ChangesMixin:
    # ------------------------------------------------------------------ files

    def file_deleted_event(self, file_id: str) -> dict:
        """``file_deleted`` (events/file_deleted.json): the file's id and the channels it was shared in."""
        with self._lock:
            channels = list(self._files[file_id]["channels"])
        event = _event("file_deleted")
        event.update(file_id=file_id, channel_ids=channels, event_ts=self._next_ts())
        return event

    def change_file(self, file_id: str, **fields: Any) -> dict:
        """Change fields of the file object (e.g. ``title="new"``); returns ``file_change``
        (events/file_change.json), which names only the file: files.info tells the rest."""
        with self._lock:
            stored = self._files[file_id]
            for name in ("title", "name"):
                if name in fields:
                    stored[name] = fields.pop(name)
            stored["fields"].update(fields)
        event = _event("file_change")
        event.update(file_id=file_id, file={"id": file_id})
        return event

    # ------------------------------------------------------------------ messages

    def _message_channel_type(self, channel: str) -> str:
        return MESSAGE_CHANNEL_TYPES[self._conversation(channel)["kind"]]

    def delete_message(self, channel: str, ts: str) -> dict:
        """The message ``ts`` is deleted: it leaves history (and its thread's reply_count); returns the
        ``message_deleted`` event (events/message_deleted.json) with the message as history had it, its
        files included. (A parent with replies is simply removed: Slack's tombstone parent is not emulated.)"""
        previous = self._forget(channel, ts)
        if previous is None:
            raise KeyError(f"no message {ts} in {channel}")
        event = _event("message_deleted")
        when = self._next_ts()
        event.update(channel=channel, previous_message=previous, deleted_ts=ts, ts=when, event_ts=when,
                     channel_type=self._message_channel_type(channel))
        return event

    def edit_message(self, channel: str, ts: str, text: str, *, user: str | None = None) -> dict:
        """``user`` (default: the author) edits the text of message ``ts``; history shows the new text and
        ``edited``. Returns ``message_changed`` (events/message_changed.json)."""
        from .driver import _rich_text
        from .history import ts_key

        previous = self.history_message(channel, ts)
        if previous is None:
            raise KeyError(f"no message {ts} in {channel}")
        when = self._next_ts()
        with self._lock:
            record = self._history[channel]["records"][ts_key(ts)]
            editor = user or record.get("user")
            record["text"] = text
            if isinstance(record.get("blocks"), list) and record["blocks"][:1] and \
                    record["blocks"][0].get("type") == "rich_text":
                record["blocks"] = _rich_text(text)
            record["edited"] = {"user": editor, "ts": when}
        event = _event("message_changed")
        event.update(message=self.history_message(channel, ts), previous_message=previous, channel=channel,
                     ts=when, event_ts=when, channel_type=self._message_channel_type(channel))
        return event

    # ------------------------------------------------------------------ channels

    def _set_conversation(self, channel: str, **state: Any) -> dict:
        with self._lock:
            known = self._conversations.setdefault(channel, self._default_conversation(channel))
            known.update(state)
            return copy.deepcopy(known)

    def archive_channel(self, channel: str, user: str = "U0USER") -> dict:
        """``user`` archives ``channel``: conversations.info says is_archived, posting answers is_archived, history
        stays readable. Returns channel_archive (public) or group_archive (private channels)."""
        conversation = self._set_conversation(channel, archived=True)
        if conversation["kind"] not in ("public", "private"):
            raise ValueError("only channels can be archived")
        event = _event("channel_archive" if conversation["kind"] == "public" else "group_archive")
        event.update(channel=channel, user=user, event_ts=self._next_ts())
        return event

    def delete_channel(self, channel: str, actor: str = "U0USER") -> dict:
        """``actor`` deletes ``channel``: conversations.info, conversations.history, posting and permalinks answer
        channel_not_found. Returns channel_deleted (public) or group_deleted (private channels)."""
        conversation = self._set_conversation(channel, deleted=True)
        if conversation["kind"] == "public":
            event = _event("channel_deleted")
        else:
            event = _event("group_deleted")
            event["date_deleted"] = int(time.time())
        event.update(channel=channel, actor_id=actor, event_ts=self._next_ts())
        return event

    def member_joined_channel(self, channel: str, user: str | None = None, *, inviter: str | None = "U0USER"
                              ) -> dict:
        """``user`` (default: the bot, which then is a member) joins ``channel``, invited by ``inviter`` (None: they
        joined by themselves, and the event has no inviter). events_pending/member_joined_channel.json."""
        user = user or self.bot_user_id
        conversation = self._set_conversation(channel, member=True) if user == self.bot_user_id \
            else self._conversation(channel)
        event = _event("member_joined_channel")
        event.update(user=user, channel=channel, channel_type=MEMBER_CHANNEL_TYPES[conversation["kind"]],
                     team=self.user_team(user), inviter=inviter, event_ts=self._next_ts())
        if inviter is None:
            del event["inviter"]
        return event

    def member_left_channel(self, channel: str, user: str | None = None) -> dict:
        """``user`` (default: the bot, which then is no member: conversations.history answers not_in_channel in a
        public channel, channel_not_found in a private one) leaves ``channel``.
        events/member_left_channel.json."""
        user = user or self.bot_user_id
        conversation = self._set_conversation(channel, member=False) if user == self.bot_user_id \
            else self._conversation(channel)
        event = _event("member_left_channel")
        event.update(user=user, channel=channel, channel_type=MEMBER_CHANNEL_TYPES[conversation["kind"]],
                     team=self.user_team(user), event_ts=self._next_ts())
        return event

    def channel_left(self, channel: str, actor: str = "U0USER") -> dict:
        """``actor`` removed the bot from ``channel``: channel_left (public, events/channel_left.json, as
        a bot app received it) or group_left (private channels). The bot is no member afterwards."""
        conversation = self._set_conversation(channel, member=False)
        event = _event("channel_left" if conversation["kind"] == "public" else "group_left")
        event.update(channel=channel, actor_id=actor, event_ts=self._next_ts())
        return event

"""What keeps remembered channels current besides new posts: deleted and changed files, archived, deleted
or newly shared channels, the bot removed, the app uninstalled or its token revoked. Each is kept in the
registry's journal by `keep_event` before Slack gets its answer, and applied by bot.channel_memory's
lifecycle worker within seconds."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext

from ..services import services_of

# https://api.slack.com/events: file_deleted and file_change (files:read); channel_archive, channel_deleted,
# channel_left, channel_shared and member_left_channel (channels:read), their group_ twins (groups:read);
# app_uninstalled and tokens_revoked (no scope).
EVENTS = ("file_deleted", "file_change", "channel_archive", "channel_deleted", "channel_left", "channel_shared",
          "group_archive", "group_deleted", "group_left", "member_left_channel", "app_uninstalled",
          "tokens_revoked")


def keep_event(body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> None:
    """A listener middleware: it runs before the ack, so an event is kept before Slack hears that it was
    received. When a deletion cannot be kept this raises, Slack is answered with an error, and it sends
    the event again (at-least-once); an event kept twice is applied once."""
    memory = services_of(context).memory
    if memory is not None:  # FINDIMAGE_REMEMBER=off: nothing is remembered, nothing to keep current
        memory.keep(body.get("event") or {}, body.get("event_id"))
    next()


def on_channel_event() -> None:
    """Everything was done before the ack (keep_event); the event's work is the lifecycle worker's."""


def register(app: App) -> None:
    # Registered whatever FINDIMAGE_REMEMBER says: the manifest subscribes to these events either way,
    # and an event without a listener is answered 404 and logged as unhandled by Bolt.
    for name in EVENTS:
        app.event(name, middleware=[keep_event])(on_channel_event)

"""What keeps remembered channels current besides new posts (bot/handlers/posted_images.py hands those
over): deleted and changed files, archived, deleted or newly shared channels, the bot removed. Each is
queued for bot.channel_memory and acked at once."""
from __future__ import annotations

from slack_bolt import App

from ..answering import services_of

# https://api.slack.com/events: file_deleted and file_change (files:read); channel_archive, channel_deleted,
# channel_left, channel_shared and member_left_channel (channels:read), their group_ twins (groups:read).
EVENTS = ("file_deleted", "file_change", "channel_archive", "channel_deleted", "channel_left", "channel_shared",
          "group_archive", "group_deleted", "group_left", "member_left_channel")


def on_channel_event(event, client, context) -> None:
    memory = services_of(context).memory
    if memory is not None:  # FINDIMAGE_REMEMBER=off: nothing is remembered, nothing to keep current
        memory.notice(client, event)


def register(app: App) -> None:
    # Registered whatever FINDIMAGE_REMEMBER says: the manifest subscribes to these events either way,
    # and an event without a listener is answered 404 and logged as unhandled by Bolt.
    for name in EVENTS:
        app.event(name)(on_channel_event)

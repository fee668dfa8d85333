"""What keeps remembered channels current besides new posts (bot/handlers/posted_images.py hands those
over): deleted and changed files, archived, deleted or newly shared channels, the bot removed. Each is
queued for bot.channel_memory and acked at once."""
from __future__ import annotations

from slack_bolt import App

from ..answering import Services

# https://api.slack.com/events: file_deleted and file_change (files:read); channel_archive, channel_deleted,
# channel_left, channel_shared and member_left_channel (channels:read), their group_ twins (groups:read).
EVENTS = ("file_deleted", "file_change", "channel_archive", "channel_deleted", "channel_left", "channel_shared",
          "group_archive", "group_deleted", "group_left", "member_left_channel")


def register(app: App, services: Services) -> None:
    memory = services.memory
    if memory is None:  # FINDIMAGE_REMEMBER=off: nothing is remembered, nothing to keep current
        return

    def on_channel_event(event, client):
        memory.notice(client, event)

    for name in EVENTS:
        app.event(name)(on_channel_event)

"""Slack entry points, one module each; `register_all` wires them into a Bolt app."""
from __future__ import annotations

from slack_bolt import App

from ..answering import Services
from . import actions, channel_events, command, home, posted_images, shortcut


def register_all(app: App, services: Services) -> None:
    command.register(app, services)
    posted_images.register(app, services)
    actions.register(app, services)
    shortcut.register(app, services)
    home.register(app, services)
    channel_events.register(app, services)

"""Slack entry points, one module each; `register_all` wires them into a Bolt app."""
from __future__ import annotations

from slack_bolt import App

from . import command, posted_images


def register_all(app: App, services) -> None:
    command.register(app, services)
    posted_images.register(app, services)

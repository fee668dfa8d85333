"""Slack entry points, one module each; `register_all` wires them into a Bolt app.

Listeners are module-level functions, as in Slack's bolt-python template: each finds the process's
services in Bolt's context (`services_of(context)`), which one middleware puts there for every request.
"""
from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App, BoltContext

from ..services import Services
from . import actions, channel_events, command, home, posted_images, shortcut


def register_all(app: App, services: Services) -> None:
    # Bolt passes middleware arguments by these names
    def provide_services(context: BoltContext, next: Callable[[], None]) -> None:
        context["services"] = services
        next()

    app.middleware(provide_services)
    for module in (command, posted_images, actions, shortcut, home, channel_events):
        module.register(app)

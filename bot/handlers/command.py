"""`/findimage <text>`: ack at once (usage, an option problem, or "searching"), search after the ack."""
from __future__ import annotations

import logging

from slack_bolt import App

from ..answering import Services, answer_text_query
from ..channels import Requester
from ..delivery import CommandTarget
from ..options import OptionError, parse_command_text, wants_help
from ..replies import searching_text, usage_text
from ..work import BUSY_TEXT

log = logging.getLogger(__name__)
COMMAND = "/findimage"


def register(app: App, services: Services) -> None:
    def findimage_command(ack, command, respond, client):
        raw = command.get("text") or ""
        if wants_help(raw):
            ack(text=usage_text(services.settings.top_k))  # text in an ack is seen only by the requester
            return
        requester = Requester.of_command(command)
        refusal = services.policy.quick_refusal(command.get("channel_id"), requester)
        if refusal is not None:
            ack(text=refusal)
            return
        try:
            query = parse_command_text(raw, services.settings.top_k)
        except OptionError as exc:
            ack(text=str(exc))
            return
        target = CommandTarget(client, respond, command["channel_id"], command["user_id"])
        ticket = services.work.reserve()  # before the ack, which tells whether an answer will come
        if ticket is None:
            log.warning("command from %s in %s refused: the answer queue is full", command["user_id"],
                        command["channel_id"])
            ack(text=BUSY_TEXT)
            return
        ack(text=searching_text(query.text, query.folder))
        log.info("command from %s in %s: %r k=%d folder=%s", command["user_id"], command["channel_id"],
                 query.text, query.k, query.folder)
        ticket.submit(answer_text_query, services, client, query, requester, target)

    app.command(COMMAND)(findimage_command)

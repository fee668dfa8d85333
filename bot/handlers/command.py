"""`/findimage <text>`: ack at once (usage, an option problem, or "searching"), search after the ack;
`/findimage duplicates [in:<folder>]`: the report of near-identical archive images, to the requester only."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from findimage.query import QueryError, read_command, read_duplicates
from findimage.visibility import Place, Purpose

from ..answering import answer_duplicates, answer_query, tell_safely
from ..channels import TURNED_OFF, Requester, refusal_text
from ..delivery import CommandTarget
from ..errors import user_message
from ..metrics import counted, timed
from ..options import IN_SLACK, wants_help
from ..replies import searching_text
from ..services import Services, services_of
from ..slack_clients import before_ack
from ..work import BUSY_TEXT

log = logging.getLogger(__name__)
COMMAND = "/findimage"


# `/findimage remember`, `/findimage remember status`, `/findimage forget`: what they do with the channel.
MEMORY_COMMANDS = {"remember": "remember", "remember status": "status", "forget": "forget"}


def memory_command(raw: str) -> str | None:
    return MEMORY_COMMANDS.get(" ".join(raw.split()).lower())


def run_memory_command(services: Services, what: str, requester: Requester, target: CommandTarget) -> str:
    """After the ack: turn remembering on or off in the target's channel (said to the whole channel, in the
    language of whoever asked), or say how far it is."""
    memory, channel_id = services.memory, target.channel_id or ""
    said = services.policy.language_of(target.client, requester.user_id)
    try:
        if memory is None:
            text, public = said._(TURNED_OFF), False
        elif what == "remember":
            text, public = memory.remember(target.client, channel_id, requester, said)
        elif what == "forget":
            text, public = memory.forget(channel_id, requester, said)
        else:
            text, public = memory.status(channel_id, said), False
    except Exception as exc:
        tell_safely(target, user_message(exc, said))
        return "failed"
    if public:
        target.post(text)
    else:
        tell_safely(target, text)
    return "answered"


def findimage_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient,
                      context: BoltContext) -> None:
    services = services_of(context)
    raw = command.get("text") or ""
    requester = Requester.of_command(command)
    # The ack speaks the requester's language: their Slack locale is learned before it (users.info, cached
    # for minutes; none where FINDIMAGE_LANGUAGE names one), in time for the ack or not at all (English then).
    asking = services.policy.asking(Place.of(command.get("channel_id")), requester)
    if wants_help(raw):
        # text in an ack is seen only by the requester
        ack(text=services.usage(asking.language(before_ack(client))))
        counted("command", "answered")
        return
    what = memory_command(raw)
    if what is not None:  # remembering decides for itself (the allowlist included); forgetting is never refused
        ack()
        target = CommandTarget(client, respond, command["channel_id"], command["user_id"])
        log.info("/findimage %s from %s in %s", raw.strip(), command["user_id"], command["channel_id"])
        if not services.work.submit(timed("channel_command", run_memory_command), services, what, requester,
                                    target):
            counted("channel_command", "busy")
        return
    # The allowlist and a team the payload names, decided here once: the answer goes on from this Asking.
    said = asking.language(before_ack(client))  # the answer's too: one language per request
    quick = asking.quick()
    if quick.refusal is not None:
        ack(text=refusal_text(Purpose.ANSWER, quick.refusal, said))
        counted("command", "refused")
        return
    try:
        duplicates = read_duplicates(raw, IN_SLACK)
        query = read_command(raw, services.settings, IN_SLACK) if duplicates is None else None
    except QueryError as exc:
        ack(text=exc.said_in(said))
        counted("command", "invalid")
        return
    target = CommandTarget(client, respond, command["channel_id"], command["user_id"])
    ticket = services.work.reserve()  # before the ack, which tells whether an answer will come
    if ticket is None:
        log.warning("command from %s in %s refused: the answer queue is full", command["user_id"],
                    command["channel_id"])
        ack(text=said._(BUSY_TEXT))
        counted("command", "busy")
        return
    with ticket:  # given back if the ack fails: no answer was promised
        if duplicates is not None:  # the report, only to the requester, archive images only
            ack(text=said._("Looking for near-identical images in the archive…"))
            log.info("duplicates report for %s in %s (folder %s)", command["user_id"], command["channel_id"],
                     duplicates.folder)
            ticket.submit(timed("command", answer_duplicates), services, duplicates, asking, target)
        elif query is not None:
            ack(text=searching_text(query, said))
            log.info("command from %s in %s: %r k=%d folder=%s", command["user_id"], command["channel_id"],
                     query.text, query.k, query.folder)
            ticket.submit(timed("command", answer_query), services, query, asking, target)


def register(app: App) -> None:
    app.command(COMMAND)(findimage_command)

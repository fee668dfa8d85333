"""The buttons under every answer: "More like #n" (an archive image's neighbours) and "Show more".

Acked at once; the search runs on the work pool and answers where the button was clicked (its thread, if
any). A button answers once per person: Slack's re-deliveries and double-clicks of the same button on the
same message are dropped, the first answer is already there.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from findimage.i18n import N_
from findimage.query import Query, QuerySettings
from findimage.visibility import Place, Purpose

from ..answering import answer_query, submit_or_busy, tell_safely
from ..buttons import MORE_LIKE_THIS_IDS, SHOW_MORE, BadButton, read_more_like, read_show_more
from ..channels import Requester, refusal_text
from ..delivery import InteractionTarget
from ..metrics import counted
from ..services import Services, services_of

log = logging.getLogger(__name__)
UNREADABLE = N_("I cannot read this button (it may come from an older version of me); please search again.")


def interaction_target(body: dict, client: WebClient, respond: Respond) -> InteractionTarget:
    """Where a message's button was used: its channel, and its thread when the message is a reply in one.

    A message that has replies carries thread_ts too, equal to its own ts: it is the thread's parent, not
    in a thread, and is answered like any top-level message (through the response_url)."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    thread_ts = container.get("thread_ts") or message.get("thread_ts")
    if thread_ts is not None and thread_ts == (container.get("message_ts") or message.get("ts")):
        thread_ts = None
    return InteractionTarget(client, respond, channel, body["user"]["id"], thread_ts=thread_ts)


def first_click(services: Services, body: dict, action: dict) -> bool:
    view = body.get("view") or {}
    # A message's button, or a Home tab's as published (its hash changes with every publication)
    where = (body.get("container") or {}).get("message_ts") or f"{view.get('id')}:{view.get('hash')}"
    key = f"click:{body['user']['id']}:{where}:{action.get('action_id')}:{action.get('value')}"
    if services.seen.first_time(key):
        return True
    log.info("button %s of %s clicked again by %s; answered already", action.get("action_id"), where,
             body["user"]["id"])
    return False


def start(services: Services, body: dict, action: dict, target: InteractionTarget,
          query_of: Callable[[str | None, QuerySettings], Query]) -> None:
    """The click's query, read from its value by `query_of`, answered after the ack where it may be."""
    asking = services.policy.asking(Place.of(target.channel_id), Requester.of_interaction(body))
    said = asking.language(target.client)  # after the ack: the click's answer comes later anyway
    quick = asking.quick()
    if quick.refusal is not None:
        counted("button", "refused")
        services.work.submit(tell_safely, target, refusal_text(Purpose.ANSWER, quick.refusal, said))
        return
    try:
        query = query_of(action.get("value"), services.settings)
    except BadButton as exc:
        log.warning("unreadable button from %s: %s", target.user_id, exc)
        counted("button", "invalid")
        services.work.submit(tell_safely, target, said._(UNREADABLE))
        return
    log.info("%s from %s in %s: %s", action.get("action_id"), target.user_id, target.channel_id, query.compact())
    submit_or_busy(services, "button", target, said, answer_query, services, query, asking, target)


# The duplicate check comes before the ack: once Slack has its answer, the click is either queued or dropped.
def more_like_this(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond,
                   context: BoltContext) -> None:
    services = services_of(context)
    first = first_click(services, body, action)
    ack()
    if first:
        start(services, body, action, interaction_target(body, client, respond), read_more_like)


def show_more(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond,
              context: BoltContext) -> None:
    services = services_of(context)
    first = first_click(services, body, action)
    ack()
    if first:
        start(services, body, action, interaction_target(body, client, respond), read_show_more)


def register(app: App) -> None:
    app.action(MORE_LIKE_THIS_IDS)(more_like_this)
    app.action(SHOW_MORE)(show_more)


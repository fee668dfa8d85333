"""The "Find similar images" message shortcut: any message with images, searched like a posted photo.

The answer goes into that message's thread. Everything the user should know but the channel should not
(no images in the message, the bot may not post or read files there) goes only to them, through the
shortcut's response_url, which reaches them in any conversation.
"""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from findimage.i18n import N_
from findimage.query import Query, example_query
from findimage.visibility import Place, Purpose

from ..answering import answer_posted_images, submit_or_busy, tell_safely
from ..channels import Asking, Requester, refusal_text
from ..delivery import InteractionTarget, Target
from ..metrics import counted
from ..options import IN_SLACK
from ..services import Services, services_of
from ..slack_files import is_image_file, needs_file_info

log = logging.getLogger(__name__)
CALLBACK_ID = "find_similar"
NO_IMAGES = N_("This message has no images, so there is nothing to compare. Use *Find similar images* on a "
               "message with a photo, or search by description with `/findimage`.")


def find_similar(ack: Ack, shortcut: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    # Slack re-sends an interaction it got no ack for in time; trigger_id is the same then.
    if not services.seen.first_time(f"shortcut:{shortcut.get('trigger_id')}"):
        log.info("shortcut %s delivered again; answered already", shortcut.get("trigger_id"))
        return
    message = shortcut.get("message") or {}
    requester = Requester.of_interaction(shortcut)  # a shortcut's user has no team_id: users.info tells
    channel = (shortcut.get("channel") or {}).get("id")
    target = InteractionTarget(client, respond, channel, requester.user_id,
                               thread_ts=message.get("thread_ts") or message.get("ts"))
    files = [f for f in message.get("files") or [] if is_image_file(f) or needs_file_info(f)]
    asking = services.policy.asking(Place.of(channel), requester)
    said = asking.language(client)  # after the ack
    if not files:
        counted("shortcut", "invalid")
        services.work.submit(tell_safely, target, said._(NO_IMAGES))
        return
    quick = asking.quick()
    if quick.refusal is not None:
        counted("shortcut", "refused")
        services.work.submit(tell_safely, target, refusal_text(Purpose.ANSWER, quick.refusal, said))
        return
    log.info("find similar: %d file(s) of message %s in %s, for %s", len(files), message.get("ts"), channel,
             requester.user_id)
    submit_or_busy(services, "shortcut", target, said, answer_asked_images, services, files,
                   example_query(services.settings, IN_SLACK), asking, target)


def answer_asked_images(services: Services, files: list[dict], query: Query, asking: Asking, target: Target) -> str:
    """The images of a message someone asked about: answered as posted images are, and where none turns out
    to be an image (stripped file objects, completed first), they are told so."""
    outcome = answer_posted_images(services, files, query, asking, target)
    if outcome == "ignored":
        tell_safely(target, asking.language(target.client)._(NO_IMAGES))
        return "invalid"
    return outcome


def register(app: App) -> None:
    app.shortcut(CALLBACK_ID)(find_similar)

"""Photos posted in a channel: answered in the message's thread, once per event and image.

The listener only filters and queues (so the event is acked at once); the job completes stripped file
objects with files.info, and only if the message holds images checks where they may be answered.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from findimage.query import example_query
from findimage.visibility import Place

from ..answering import answer_posted_images, tell_safely
from ..channels import Lookup, Requester, is_from_another_app
from ..delivery import ThreadTarget
from ..metrics import counted, timed
from ..options import IN_SLACK
from ..services import Services, services_of
from ..slack_files import is_image_file, needs_file_info
from ..work import BUSY_TEXT
from .channel_events import keep_event

log = logging.getLogger(__name__)

# New messages only: edits (message_changed), deletions and other subtypes carry no new image to answer.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


def is_from_this_bot(event: dict, context: Mapping[str, Any]) -> bool:
    """Bolt already drops the bot's own events; checked again because answering ourselves would loop."""
    bot_id, bot_user_id = context.get("bot_id"), context.get("bot_user_id")
    return bool((bot_id and event.get("bot_id") == bot_id) or (bot_user_id and event.get("user") == bot_user_id))


def images_to_answer(event: dict, services: Services) -> list[dict]:
    """Image files of this message not answered before, and stripped file objects (`check_file_info`, no
    type yet) for the answer job to look up; other files are ignored silently."""
    channel = event.get("channel")
    return [f for f in event.get("files") or []
            if (is_image_file(f) or needs_file_info(f)) and services.seen.first_time(f"file:{channel}:{f.get('id')}")]


def on_message(event: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    services = services_of(context)
    if is_from_this_bot(event, context):
        return
    if not event.get("files") or event.get("subtype") not in ANSWERED_SUBTYPES:
        return
    if is_from_another_app(event, frozenset(services.settings.answer_bots)):
        log.info("files posted by the app %s in %s ignored (not in FINDIMAGE_ANSWER_BOTS)",
                 event.get("bot_id") or event.get("app_id"), event.get("channel"))
        return
    event_id = body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}"
    if not services.seen.first_time(f"event:{event_id}"):
        log.info("event %s was already answered; ignoring Slack's re-delivery", event_id)
        return
    files = images_to_answer(event, services)
    if not files:
        return
    thread_ts = event.get("thread_ts") or event["ts"]
    target = ThreadTarget(client, event["channel"], thread_ts)
    requester = Requester.of_event(event)
    shared = body.get("is_ext_shared_channel") is True
    log.info("%d file(s) posted by %s in %s", len(files), event.get("user"), event["channel"])
    asking = services.policy.asking(Place.of(event["channel"]), requester, Lookup.SHARED if shared else Lookup.CACHED)
    if not services.work.submit(timed("posted_image", answer_posted_images), services, files,
                                example_query(services.settings, IN_SLACK), asking, target):
        counted("posted_image", "busy")
        # Full: "busy" now, from Bolt's listener thread, better than never; but not where no image is
        # known yet, nor where the answer would have been a refusal.
        if any(is_image_file(f) for f in files) and not shared and not asking.quick().refused:
            tell_safely(target, asking.language(client)._(BUSY_TEXT))


def register(app: App) -> None:
    # A remembered channel's new images, or a deleted message's, are kept before the ack (channel_events)
    app.event("message", middleware=[keep_event])(on_message)

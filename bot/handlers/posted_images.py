"""Images posted in a channel the bot is in: answered in the message's thread, once per event and image."""
from __future__ import annotations

import logging

from slack_bolt import App

from ..answering import Services, answer_posted_images, submit_or_busy, tell_safely
from ..delivery import ThreadTarget
from ..slack_files import is_image_file, needs_file_info

log = logging.getLogger(__name__)

# New messages only: edits (message_changed), deletions and other subtypes carry no new image to answer.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


def is_from_this_bot(event: dict, context) -> bool:
    """Bolt already drops the bot's own events; checked again because answering ourselves would loop."""
    bot_id, bot_user_id = context.get("bot_id"), context.get("bot_user_id")
    return bool((bot_id and event.get("bot_id") == bot_id) or (bot_user_id and event.get("user") == bot_user_id))


def images_to_answer(event: dict, services: Services) -> list[dict]:
    """Image files of this message not answered before (non-image files are ignored silently).

    Stripped file objects (`check_file_info`) carry no type yet; the answer job looks them up first.
    """
    channel = event.get("channel")
    return [f for f in event.get("files") or []
            if (is_image_file(f) or needs_file_info(f)) and services.seen.first_time(f"file:{channel}:{f.get('id')}")]


def register(app: App, services: Services) -> None:
    def on_message(event, body, context, client):
        if not event.get("files") or event.get("subtype") not in ANSWERED_SUBTYPES:
            return
        if is_from_this_bot(event, context):
            return
        event_id = body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}"
        if not services.seen.first_time(f"event:{event_id}"):
            log.info("event %s was already answered; ignoring Slack's re-delivery", event_id)
            return
        images = images_to_answer(event, services)
        if not images:
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        target = ThreadTarget(client, event["channel"], thread_ts)
        refusal = services.policy.event_refusal(body, event)
        if refusal is not None:
            log.info("image(s) posted by %s in %s not searched: %s", event.get("user"), event["channel"], refusal)
            if not services.work.submit(tell_safely, target, refusal):  # a Web API call: after the ack
                tell_safely(target, refusal)
            return
        log.info("%d image(s) posted by %s in %s", len(images), event.get("user"), event["channel"])
        # When full: "busy" now, from Bolt's listener thread, better than never.
        submit_or_busy(services, target, answer_posted_images, services, client, images, target)

    app.event("message")(on_message)

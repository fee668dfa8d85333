"""The App Home tab: the archive's status, how to search, and example queries to try.

Published anew (views.publish) each time someone opens the tab, from the work pool so the event's ack
never waits for the store. An example query's answer goes to the person's direct messages with the app
(its Messages tab): private, and with room for the images and their buttons, which a Home tab has not.

The tab applies the refusals every answer does: a user of another team (or one whose team cannot be
learned) sees only the sentence why; where FINDIMAGE_CHANNELS does not list the person's direct messages
with the app, the tab offers no examples, and an example clicked anyway posts nothing. The status names
no path and no host.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from findimage.i18n import LANGUAGES, N_, Language, language
from findimage.query import read_command
from findimage.stores.base import META_LAST_PASS
from findimage.visibility import Place, Purpose, Why

from ..answering import answer_query
from ..buttons import HOME_EXAMPLE, HOME_EXAMPLE_IDS, button
from ..channels import Requester, refusal_text
from ..delivery import ThreadTarget
from ..errors import user_message
from ..metrics import counted, timed
from ..options import IN_SLACK
from ..services import Services, services_of
from ..untrusted import shown
from .actions import first_click

log = logging.getLogger(__name__)
# Example queries, offered in the person's language (the text model reads 50+ languages).
EXAMPLES = (N_("a snow covered mountain"), N_("stage with red lights"), N_("people laughing at a party"))


def examples_in(said: Language) -> list[str]:
    return [said._(text) for text in EXAMPLES]


def is_example(value: object) -> bool:
    """An example of the tab as some language offers it (a value comes back from whoever clicks)."""
    return any(value in examples_in(language(code)) for code in LANGUAGES)


def describe_pass(data: dict | None, said: Language) -> str:
    if not data:
        return said._("no indexing pass has finished yet")
    when = datetime.fromtimestamp(data["finished_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    return said._("{when}: {added} added, {updated} updated, {moved} moved, {removed} removed, {unchanged} "
                  "unchanged, {failed} failed ({seconds} s)", when=when, added=data["added"],
                  updated=data["updated"], moved=data["moved"], removed=data["removed"],
                  unchanged=data["unchanged"], failed=data["failed"], seconds=format(data["seconds"], ".0f"))


def model_name(model_id: object) -> str:
    """A model as users may see it: a hub id as it is, a local folder by its name only (no paths)."""
    text = str(model_id)
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith((".", "~")) or path.exists():
        return path.name or "local model"
    return text


def status_lines(services: Services, said: Language) -> list[str]:
    """What an archive user may want to know before searching: size, freshness, failures, models."""
    searcher, settings = services.searcher, services.settings
    try:
        count = searcher.store.count()
        raw_pass = searcher.store.get_meta(META_LAST_PASS)
    except Exception as exc:
        return [user_message(exc, said)]
    last_pass = json.loads(raw_pass) if raw_pass else None
    lines = [said._("*Images indexed:* {count}", count=said.number(count)),
             said._("*Last completed pass:* {summary}", summary=describe_pass(last_pass, said))]
    if last_pass:  # the pass records it in the store: the indexer's own files may be on another machine
        lines.append(said._("*Files that failed to index:* {count}",
                            count=said.number(last_pass.get("failing_files", 0))))
    lines.append(said._("*Store:* {store}", store="Elasticsearch" if settings.uses_elasticsearch
                        else said._("embedded")))
    text_model = getattr(searcher.text_embedder, "model_id", settings.text_model)
    lines.append(said._("*Models:* images {image}, text {text}",
                        image=shown(model_name(searcher.image_embedder.model_id)), text=shown(model_name(text_model))))
    return lines


def header(said: Language) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": said._("findimage: the team's image archive")}}


def home_view(services: Services, said: Language, refusal: str | None = None, examples: bool = True) -> dict:
    """The tab, in `said`; only `refusal` when the archive may not be shown to this person, no examples where
    they would not be answered."""
    if refusal is not None:
        return {"type": "home", "blocks": [header(said), {"type": "section",
                                                           "text": {"type": "mrkdwn", "text": refusal}}]}
    blocks = [
        header(said),
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(status_lines(services, said))[:3000]}},
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": services.usage(said)[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join([
            said._("• On any message with a photo: *⋮ More actions → Find similar images*."),
            said._("• Under every answer: *More like #n* for that image's neighbours, *Show more* for the next "
                   "matches (up to {most}).", most=services.settings.max_results)])}},
    ]
    if examples:
        buttons = [button(f"“{text}”", f"{HOME_EXAMPLE}:{n}", text) for n, text in enumerate(examples_in(said), 1)]
        blocks += [
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": said._(
                "*Try an example* (the answer comes to you in my Messages tab):")}},
            {"type": "actions", "elements": buttons},
        ]
    return {"type": "home", "blocks": blocks}


def publish_home(services: Services, client: WebClient, user_id: str, channel_id: str | None) -> str:
    """`channel_id`: the person's direct messages with the app, where the examples are answered."""
    asking = services.policy.asking(Place.home(channel_id), Requester(user_id))
    said = asking.language(client)
    sight = asking.sight(client)
    # Where the allowlist leaves out the person's direct messages with the app, the tab still shows the
    # archive's status, but offers no example (it would not be answered).
    shown = sight.refusal is None or sight.refusal is Why.NOT_ENABLED
    refusal = refusal_text(Purpose.ANSWER, sight.refusal, said) if sight.refusal is not None and not shown else None
    view = home_view(services, said, refusal, examples=not sight.refused)
    try:
        client.views_publish(user_id=user_id, view=view)
    except Exception:
        log.exception("could not publish the Home tab for %s", user_id)
        return "failed"
    return "refused" if refusal is not None else "answered"


def answer_example(services: Services, client: WebClient, text: str, requester: Requester) -> str:
    """An example query, answered in the person's direct messages with the app; nothing where the tab
    would not have offered it (the refusal is on the tab already)."""
    try:
        channel = client.conversations_open(users=requester.user_id)["channel"]["id"]
    except Exception:
        log.exception("could not open a direct message with %s", requester.user_id)
        return "failed"
    asking = services.policy.asking(Place.home(channel), requester)
    sight = asking.sight(client)
    if sight.refusal is not None:
        log.info("example clicked by %s not answered: %s", requester.user_id, sight.refusal.value)
        return "refused"
    return answer_query(services, read_command(text, services.settings, IN_SLACK), asking,
                        ThreadTarget(client, channel, None))


def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab") != "home":
        return  # the Messages tab: nothing to refresh
    services = services_of(context)
    if not services.work.submit(timed("home", publish_home), services, client, event["user"], event.get("channel")):
        counted("home", "busy")


def example(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    if not first_click(services, body, action) or not is_example(action.get("value")):
        return
    if not services.work.submit(timed("home_example", answer_example), services, client, action["value"],
                                Requester.of_interaction(body)):
        counted("home_example", "busy")


def register(app: App) -> None:
    app.event("app_home_opened")(home_opened)
    app.action(HOME_EXAMPLE_IDS)(example)

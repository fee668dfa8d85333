"""The buttons under every answer, and the query state that travels in their values.

There is no server-side session: a "Show more" button carries its whole query (findimage.query's Query:
text or archive image id, folder, dates, how many to skip) in its compact form, so any replica, or the same
process after a restart, can answer it. Slack keeps a button value to 2000 characters; a query too long
for that gets no "Show more" button rather than a truncated one.

A value comes back from whoever sends the click, so it is read like user input, by the parser that reads
the command (findimage.query.read_compact): only the fields the compact form has, each of its type, `k` up
to what a command may ask for, no page beyond FINDIMAGE_MAX_RESULTS, folders inside the archive and dates
as the command's options take them. Anything else is a BadButton.
"""
from __future__ import annotations

import re

from findimage.i18n import Language
from findimage.query import Query, QueryError, QuerySettings, read_compact, read_image_id

from .options import IN_SLACK

MORE_LIKE_THIS = "more_like_this"
SHOW_MORE = "show_more"
HOME_EXAMPLE = "home_example"
MORE_LIKE_THIS_IDS = re.compile(rf"^{MORE_LIKE_THIS}(:[0-9]+)?$")
HOME_EXAMPLE_IDS = re.compile(rf"^{HOME_EXAMPLE}(:[0-9]+)?$")
MAX_VALUE_CHARS = 2000  # Slack's limit for a button value


class BadButton(ValueError):
    """A button value this version cannot read (forged, or from a much older answer)."""


def read_show_more(value: str | None, settings: QuerySettings) -> Query:
    """The query a "Show more" value carries; BadButton (with the reason) unless the bot could have written it."""
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise BadButton("not a button value this bot writes")
    try:
        return read_compact(value, settings, IN_SLACK)
    except QueryError as exc:
        raise BadButton(str(exc)) from None


def read_more_like(value: str | None, settings: QuerySettings) -> Query:
    """The query of a "More like #n" button: the images nearest to the archive image its value names."""
    try:
        return read_image_id(value, settings, IN_SLACK)
    except QueryError as exc:
        raise BadButton(str(exc)) from None


def button(text: str, action_id: str, value: str) -> dict:
    return {"type": "button", "text": {"type": "plain_text", "text": text[:75], "emoji": True},
            "action_id": action_id, "value": value}


def answer_actions(image_ids: list[tuple[int, str]], next_page: Query | None, said: Language) -> dict | None:
    """An actions block: "More like #n" per shown match, then "Show more" when there is a next page."""
    # action_ids must be unique within a block; the rank suffix keeps them so.
    elements = [button(said._("More like #{rank}", rank=rank), f"{MORE_LIKE_THIS}:{rank}", image_id)
                for rank, image_id in image_ids if len(image_id) <= MAX_VALUE_CHARS]
    if next_page is not None and len(value := next_page.compact()) <= MAX_VALUE_CHARS:
        elements.append(button(said._("Show more"), SHOW_MORE, value))
    if not elements:
        return None
    return {"type": "actions", "elements": elements}

"""The buttons under every answer, and the query state that travels in their values.

There is no server-side session: a "Show more" button carries its whole query (text or archive image
id, folder, options, how many to skip) as compact JSON, so any replica, or the same process after a
restart, can answer it. Slack keeps a button value to 2000 characters; a query too long for that gets no
"Show more" button rather than a truncated one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

MORE_LIKE_THIS = "more_like_this"
SHOW_MORE = "show_more"
HOME_EXAMPLE = "home_example"
MORE_LIKE_THIS_IDS = re.compile(rf"^{MORE_LIKE_THIS}(:[0-9]+)?$")
HOME_EXAMPLE_IDS = re.compile(rf"^{HOME_EXAMPLE}(:[0-9]+)?$")
MAX_VALUE_CHARS = 2000  # Slack's limit for a button value


class BadButton(ValueError):
    """A button value this version cannot read (forged, or from a much older answer)."""


@dataclass(frozen=True)
class Page:
    """One page of a query: a text (with the command's options) or an archive image, from `skip` on."""

    k: int
    skip: int = 0
    text: str | None = None
    image_id: str | None = None
    folder: str | None = None
    options: dict = field(default_factory=dict)  # further TextQuery fields, carried as they are

    def encode(self) -> str:
        state = {"k": self.k, "s": self.skip}
        if self.text is not None:
            state["t"] = self.text
        if self.image_id is not None:
            state["i"] = self.image_id
        if self.folder:
            state["f"] = self.folder
        if self.options:
            state["o"] = self.options
        return json.dumps(state, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, value: str | None) -> "Page":
        try:
            state = json.loads(value or "")
            page = cls(k=int(state["k"]), skip=int(state["s"]), text=state.get("t"), image_id=state.get("i"),
                       folder=state.get("f"), options=dict(state.get("o") or {}))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadButton(f"unreadable button value: {exc}") from None
        if (page.text is None) == (page.image_id is None) or page.k < 1 or page.skip < 0:
            raise BadButton("a button value needs exactly one of a text and an image id")
        return page


def button(text: str, action_id: str, value: str) -> dict:
    return {"type": "button", "text": {"type": "plain_text", "text": text[:75], "emoji": True},
            "action_id": action_id, "value": value}


def answer_actions(image_ids: list[tuple[int, str]], next_page: Page | None) -> dict | None:
    """An actions block: "More like #n" per shown match, then "Show more" when there is a next page."""
    # action_ids must be unique within a block; the rank suffix keeps them so.
    elements = [button(f"More like #{rank}", f"{MORE_LIKE_THIS}:{rank}", image_id)
                for rank, image_id in image_ids if len(image_id) <= MAX_VALUE_CHARS]
    if next_page is not None and len(value := next_page.encode()) <= MAX_VALUE_CHARS:
        elements.append(button("Show more", SHOW_MORE, value))
    if not elements:
        return None
    return {"type": "actions", "elements": elements}

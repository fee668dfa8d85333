"""The buttons under every answer, and the query state that travels in their values.

There is no server-side session: a "Show more" button carries its whole query (text or archive image
id, folder, options, how many to skip) as compact JSON, so any replica, or the same process after a
restart, can answer it. Slack keeps a button value to 2000 characters; a query too long for that gets no
"Show more" button rather than a truncated one.

A value comes back from whoever sends the click, so it is read like user input: only the fields and
options this module writes, each of its type, `k` up to what a command may ask for, no page beyond
FINDIMAGE_MAX_RESULTS, folders inside the archive and dates as the command's options take them.
Anything else is a BadButton.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from findimage.dates import DateError, bound_start, check_range
from findimage.records import Filters, normalise_folder
from findimage.search import query_filters

from .options import MAX_K

MORE_LIKE_THIS = "more_like_this"
SHOW_MORE = "show_more"
HOME_EXAMPLE = "home_example"
MORE_LIKE_THIS_IDS = re.compile(rf"^{MORE_LIKE_THIS}(:[0-9]+)?$")
HOME_EXAMPLE_IDS = re.compile(rf"^{HOME_EXAMPLE}(:[0-9]+)?$")
MAX_VALUE_CHARS = 2000  # Slack's limit for a button value
MAX_IMAGE_ID_CHARS = 64
_FIELDS = {"k", "s", "t", "i", "f", "o"}
_DATE_OPTIONS = ("after", "before")  # the TextQuery fields beyond text, k and folder


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

    def __post_init__(self):
        if not _whole(self.k) or not 1 <= self.k <= MAX_K or not _whole(self.skip) or self.skip < 0:
            raise BadButton(f"k must be 1 to {MAX_K} and skip at least 0")
        if (self.text is None) == (self.image_id is None):
            raise BadButton("a button value needs exactly one of a text and an image id")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise BadButton("the text is not a text")
        if self.image_id is not None and not (isinstance(self.image_id, str)
                                              and 0 < len(self.image_id) <= MAX_IMAGE_ID_CHARS):
            raise BadButton("the image id is not an image id")

    @property
    def filters(self) -> Filters:
        """The page's folder and dates, checked (they were when the query or the button was read)."""
        return query_filters(self.folder, self.options.get("after"), self.options.get("before"))

    def encode(self) -> str:
        state: dict[str, object] = {"k": self.k, "s": self.skip}
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
    def decode(cls, value: str | None, *, max_results: int) -> Page:
        """The page a "Show more" value asks for; BadButton unless this module could have written it."""
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            raise BadButton("not a button value this bot writes")
        try:
            state = json.loads(value)
        except (ValueError, RecursionError):
            raise BadButton("the button value is not JSON") from None
        if not isinstance(state, dict) or not {"k", "s"} <= set(state) <= _FIELDS:
            raise BadButton("unknown or missing fields in the button value")
        page = cls(k=state["k"], skip=state["s"], text=state.get("t"), image_id=state.get("i"),
                   folder=_folder(state.get("f")), options=_options(state.get("o", {})))
        if page.image_id is not None and page.options:
            raise BadButton("options for an image query")
        if page.skip + page.k > max_results:
            raise BadButton(f"a page beyond FINDIMAGE_MAX_RESULTS ({max_results})")
        return page


def _whole(number) -> bool:
    return isinstance(number, int) and not isinstance(number, bool)


def _folder(folder):
    """The folder as `in:` takes it: normalised, inside the archive."""
    if folder is None:
        return None
    if not isinstance(folder, str) or normalise_folder(folder) != folder or folder.split("/")[0] == "..":
        raise BadButton("the folder is not a folder inside the archive")
    return folder


def _options(options) -> dict:
    """`after` and `before`, each as `after:` and `before:` take them (YYYY, YYYY-MM or YYYY-MM-DD), in order."""
    if (not isinstance(options, dict) or not set(options) <= set(_DATE_OPTIONS)
            or not all(isinstance(value, str) for value in options.values())):
        raise BadButton("unknown options in the button value")
    try:
        starts = {name: bound_start(value) for name, value in options.items()}
        check_range(starts.get("after"), starts.get("before"))
    except DateError:
        raise BadButton("a date option is not a date, or the dates are out of order") from None
    return dict(options)


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

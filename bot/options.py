"""What a user typed after `/findimage`: the description to look for plus the options `k=N`, `in:<folder>`,
`after:<date>` and `before:<date>`."""
from __future__ import annotations

import re
from dataclasses import dataclass

from findimage.dates import DateError, bound_start, check_range
from findimage.records import normalise_folder

from .untrusted import escape, shown

# Slack shows at most 10 files in one message, and a reply longer than that is a wall, not an answer.
MAX_K = 10
HELP_WORDS = {"", "help", "-h", "--help", "?", "hilfe", "aide", "ayuda"}

_K_OPTION = re.compile(r"^k=(.*)$", re.IGNORECASE)
# in:events/2024, in:"Summer party" or in:“Summer party” (Slack turns typed quotes into curly ones)
_IN_OPTION = re.compile(r'(?<!\S)in:(?:"([^"]*)"|“([^”]*)”|(\S+))', re.IGNORECASE)
_DATE_OPTION = re.compile(r"^(after|before):(.*)$", re.IGNORECASE)


class OptionError(ValueError):
    """The options cannot be used as typed; the message (mrkdwn, user text escaped) says how to fix them."""


@dataclass(frozen=True)
class TextQuery:
    text: str
    k: int
    folder: str | None = None
    after: str | None = None  # as typed (YYYY, YYYY-MM or YYYY-MM-DD): taken on or after its start
    before: str | None = None  # taken before its start


def unescape_slack(text: str) -> str:
    """Slack sends &, < and > escaped in slash command text; the model should see what the user typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def wants_help(raw: str | None) -> bool:
    return " ".join((raw or "").split()).lower() in HELP_WORDS


def parse_command_text(raw: str | None, default_k: int) -> TextQuery:
    """`in:events/2024 k=8 stage with red lights` -> TextQuery('stage with red lights', 8, 'events/2024')."""
    text = unescape_slack(raw or "")
    folder, text = _take_folder(text)
    k, words = _take_k(text.split(), min(default_k, MAX_K))
    dates, words = _take_dates(words)
    if not words:
        raise OptionError("Add what to look for after the options, e.g. "
                          "`/findimage in:events/2024 k=8 stage with red lights`.")
    return TextQuery(" ".join(words), k, folder, dates.get("after"), dates.get("before"))


def _take_dates(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """`after:2024-05` and `before:2024-07`, each at most once, checked as dates and as a range."""
    dates: dict[str, str] = {}
    rest = []
    for word in words:
        option = _DATE_OPTION.match(word)
        if option is None:
            rest.append(word)
            continue
        name, value = option.group(1).lower(), option.group(2)
        if name in dates:
            raise OptionError(f"Give `{name}:` at most once, e.g. `{name}:2024-05`.")
        try:
            bound_start(value)
        except DateError:
            raise OptionError(f"{shown(f'{name}:{value}')} is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, "
                              f"e.g. `{name}:2024-05`.") from None
        dates[name] = value
    if "after" in dates and "before" in dates:
        try:
            check_range(bound_start(dates["after"]), bound_start(dates["before"]))
        except DateError:
            raise OptionError(f"Nothing is both on or after {escape(dates['after'])} and before "
                              f"{escape(dates['before'])}: put the earlier date in `after:`, e.g. "
                              "`after:2024-05 before:2024-07`.") from None
    return dates, rest


def _take_folder(text: str) -> tuple[str | None, str]:
    found = list(_IN_OPTION.finditer(text))
    if len(found) > 1:
        raise OptionError("Give at most one folder with `in:` (e.g. `in:events/2024`).")
    if not found:
        return None, text
    match = found[0]
    folder = normalise_folder(next(group for group in match.groups() if group is not None))
    if folder is not None and folder.split("/")[0] == "..":
        raise OptionError(f"{shown(f'in:{folder}')} is outside the archive; name a folder inside it, "
                          "e.g. `in:events/2024`.")
    return folder, text[:match.start()] + " " + text[match.end():]


def _take_k(words: list[str], k: int) -> tuple[int, list[str]]:
    rest = []
    for word in words:
        option = _K_OPTION.match(word)
        if option is None:
            rest.append(word)
            continue
        value = option.group(1)
        if not value.isdigit() or not 1 <= int(value) <= MAX_K:
            raise OptionError(f"{shown(f'k={value}')} must be a whole number from 1 to {MAX_K} "
                              "(how many images to show).")
        k = int(value)
    return k, rest

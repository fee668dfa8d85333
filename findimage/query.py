"""A search as someone asks for it: made once where the request comes in, then passed unchanged to the
search (findimage.search.Searcher.search), whose stores take its Filters as they are.

One parser reads every door: the text after `/findimage` (`read_command`; `read_duplicates` for the
duplicates report, `duplicates` with an optional folder), a button's value (`read_compact`,
the form `Query.compact` writes; `read_image_id` for "More like this"), a posted image or the message
shortcut (`example_query`), and the command line's arguments (`read_arguments`). The limits below and one
sentence per mistake are defined here only; a `Door` says how many images may be asked for there and how
a sentence shows an option, as people type it there (`k=8` in Slack, `-k 8` on the command line).
"""
from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from findimage.errors import EXIT_USAGE, FindimageError
from findimage.i18n import N_, Translatable

# How many images one query may ask for.
MAX_K = 10  # an answer in Slack: Slack shows at most 10 files in one message, and more would be a wall
MAX_TOP_K = 50  # FINDIMAGE_TOP_K, the default (an answer in Slack still shows at most MAX_K)
MAX_ADMIN_K = 1000  # `findimage search -k`: whoever runs the command may look deeper into the ranking
MAX_IMAGE_ID_CHARS = 64

# One sentence per mistake, in English (the command line's) and marked for the catalogues (findimage.i18n):
# Slack's doors say it in the asker's language. {given}: what was typed, as the door shows it; {example} and
# {option}: how it is written there.
K_OUT_OF_RANGE = N_("{given} must be a whole number from 1 to {most} (how many images to show).")
NOT_A_DATE = N_("{given} is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. {example}.")
DATES_OUT_OF_ORDER = N_("Nothing is both on or after {after} and before {before}: the after date must come first, "
                        "so put the earlier date in {option}, e.g. {example}.")
OUTSIDE_THE_ARCHIVE = N_("{given} is outside the archive; name a folder inside it, e.g. {example}.")
GIVEN_TWICE = N_("Give {option} at most once, e.g. {example}.")
NOTHING_TO_LOOK_FOR = N_("Add what to look for after the options, e.g. {example}.")
TEXT_AND_IMAGE = "Give either a text or {option}, not both."  # the command line's only
EMPTY_TEXT = N_('The query is empty: describe the image you are looking for, e.g. "a snow covered mountain".')
TEXT_TOO_LONG = N_("The query is too long ({length:,} characters; at most {most:,}). A short description works best.")
NO_IMAGE_FILE = "No image file at {path}."  # the command line's only

_K_OPTION = re.compile(r"^k=(.*)$", re.IGNORECASE)
# in:events/2024, in:"Summer party" or in:“Summer party” (Slack turns typed quotes into curly ones)
_IN_OPTION = re.compile(r'(?<!\S)in:(?:"([^"]*)"|“([^”]*)”|(\S+))', re.IGNORECASE)
_DATE_OPTION = re.compile(r"^(after|before|nach|vor):(.*)$", re.IGNORECASE)
# The command's date options as German speakers may type them too (the bot answers in German: findimage.i18n).
_DATE_NAMES = {"after": "after", "before": "before", "nach": "after", "vor": "before"}
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
_STORED_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00$")  # a date's start as Filters hold it
_COMPACT_FIELDS = {"k", "s", "t", "i", "f", "o"}
_DATES = ("after", "before")


class QueryError(Translatable, FindimageError, ValueError):
    """A query that cannot be run as given; the message tells the person what to change."""

    exit_code = EXIT_USAGE


class QuerySettings(Protocol):
    """What a query takes from the settings (findimage.config.CoreSettings)."""

    @property
    def top_k(self) -> int: ...

    @property
    def max_results(self) -> int: ...


@dataclass(frozen=True)
class Filters:
    """Which images a search may return: under `folder` (normalised; None: everywhere), taken on or after
    `after` and before `before` (ISO starts). Stores read it as it is."""

    folder: str | None = None
    after: str | None = None
    before: str | None = None

    @property
    def any(self) -> bool:
        return self.folder is not None or self.after is not None or self.before is not None


EVERYWHERE = Filters()


@dataclass(frozen=True)
class Query:
    """One search as asked: a description (`text`), an indexed image (`image_id`: "More like this"), or
    neither (an example image given beside it: a posted photo, the command line's `--image`); `k` images
    from rank `skip` + 1 on, among those `filters` allows."""

    k: int
    text: str | None = None
    image_id: str | None = None
    filters: Filters = EVERYWHERE
    skip: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.skip < 0 or (self.text is not None and self.image_id is not None):
            raise ValueError(f"not a query: {self!r}")

    @property
    def folder(self) -> str | None:
        return self.filters.folder

    def following(self, found: int, max_results: int) -> Query | None:
        """The next page ("Show more"), while this one was full and `max_results` (FINDIMAGE_MAX_RESULTS) is
        not reached; None for an example image's query, which is not kept."""
        shown = self.skip + self.k
        if (self.text is None and self.image_id is None) or found < self.k or shown >= max_results:
            return None
        return replace(self, skip=shown, k=min(self.k, max_results - shown))

    def compact(self) -> str:
        """The query as compact JSON (a button's value), read back by `read_compact`; dates as days."""
        state: dict[str, object] = {"k": self.k, "s": self.skip}
        if self.text is not None:
            state["t"] = self.text
        if self.image_id is not None:
            state["i"] = self.image_id
        if self.filters.folder:
            state["f"] = self.filters.folder
        dates = {name: value[:10] for name, value in (("after", self.filters.after), ("before", self.filters.before))
                 if value is not None}
        if dates:
            state["o"] = dates
        return json.dumps(state, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Door:
    """Where a query comes in: the most images it may ask for, how its text arrives, and how its sentences
    show an option."""

    most: int
    options: Mapping[str, str]  # an option's name -> how it is typed there, before its value
    given: Callable[[str, object], str]  # (option as typed, value): what was typed, as a sentence shows it
    example: Callable[[str], str]  # how to write something there, as a sentence shows it
    received: Callable[[str], str] = str  # the text as it arrives -> as it was typed

    def typed(self, name: str, value: object) -> str:
        return self.given(self.options[name], value)

    def e_g(self, name: str, value: str) -> str:
        return self.example(f"{self.options[name]}{value}")


COMMAND_OPTIONS = {"k": "k=", "folder": "in:", "after": "after:", "before": "before:"}
ARGUMENT_OPTIONS = {"k": "-k ", "folder": "--folder ", "after": "--after ", "before": "--before ", "image": "--image"}


def command_door(quote: Callable[[str], str], received: Callable[[str], str] = str) -> Door:
    """`/findimage` and the buttons under its answers: at most MAX_K images; `quote` shows what a person
    typed (the bot's: on one line, escaped, in a code span), `received` undoes what the text went through
    on its way (the bot's: Slack's escaping of &, < and >)."""
    return Door(MAX_K, COMMAND_OPTIONS, lambda option, value: quote(f"{option}{value}"), lambda text: f"`{text}`",
                received)


ARGUMENTS = Door(MAX_ADMIN_K, ARGUMENT_OPTIONS, lambda option, value: f"{option}{value!r}", str)


def default_k(settings: QuerySettings, door: Door = ARGUMENTS) -> int:
    """How many images a query asks for where it names none: FINDIMAGE_TOP_K, at most what the door allows."""
    return min(settings.top_k, door.most)


def read_command(raw: str, settings: QuerySettings, door: Door) -> Query:
    """`in:events/2024 k=8 stage with red lights` -> Query(8, 'stage with red lights', Filters('events/2024'))."""
    folder, text = _take_folder(door.received(raw), door)
    k, words = _take_k(text.split(), door)
    dates, words = _take_dates(words, door)
    filters = _filters(folder, dates.get("after"), dates.get("before"), door)
    if not words:
        raise QueryError(NOTHING_TO_LOOK_FOR,
                         example=door.example("/findimage in:events/2024 k=8 stage with red lights"))
    return Query(k or default_k(settings, door), " ".join(words), filters=filters)


DUPLICATES_WORD = "duplicates"  # `/findimage duplicates [in:<folder>]`: the report of near-identical images
DUPLICATES_OPTIONS = N_("Only a folder may follow {word}, e.g. {example}.")


def read_duplicates(raw: str, door: Door) -> Filters | None:
    """`duplicates in:events/2024` -> Filters('events/2024') (the report's folder); None for any text that
    does not start with the word (a search)."""
    folder, text = _take_folder(door.received(raw), door)
    words = text.split()
    if not words or words[0].lower() != DUPLICATES_WORD:
        return None
    if len(words) > 1:
        raise QueryError(DUPLICATES_OPTIONS, word=door.example(DUPLICATES_WORD),
                         example=door.example(f"{DUPLICATES_WORD} {door.options['folder']}events/2024"))
    return _filters(folder, None, None, door)


def read_compact(value: str, settings: QuerySettings, door: Door) -> Query:
    """The query `Query.compact` wrote (a button's value, sent back by whoever clicks): only its fields,
    each of its type, the options as `door` takes them, no page beyond FINDIMAGE_MAX_RESULTS; QueryError
    for anything else."""
    try:
        state = json.loads(value)
    except (ValueError, RecursionError):
        raise QueryError("not JSON") from None
    if not isinstance(state, dict) or not {"k", "s"} <= set(state) <= _COMPACT_FIELDS:
        raise QueryError("unknown or missing fields")
    k, skip, text, image_id = state["k"], state["s"], state.get("t"), state.get("i")
    if not _whole(k) or not _whole(skip) or skip < 0:
        raise QueryError("k and skip are not whole numbers")
    k = _k(k, door)
    if (text is None) == (image_id is None):
        raise QueryError("neither or both of a text and an image id")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise QueryError("the text is not a text")
    if image_id is not None:
        _image_id(image_id)
    folder, dates = state.get("f"), state.get("o", {})
    if folder is not None and (not isinstance(folder, str) or normalise_folder(folder) != folder):
        raise QueryError("the folder is not a folder as a query holds it")
    if (not isinstance(dates, dict) or not set(dates) <= set(_DATES)
            or not all(isinstance(day, str) for day in dates.values())):
        raise QueryError("unknown options")
    if image_id is not None and dates:
        raise QueryError("dates for an image's query")
    if skip + k > settings.max_results:
        raise QueryError(f"a page beyond FINDIMAGE_MAX_RESULTS ({settings.max_results})")
    return Query(k, text, image_id, _filters(folder, dates.get("after"), dates.get("before"), door), skip)


def read_image_id(value: object, settings: QuerySettings, door: Door) -> Query:
    """"More like this": the images nearest to the indexed one `value` names."""
    return Query(default_k(settings, door), image_id=_image_id(value))


def example_query(settings: QuerySettings, door: Door) -> Query:
    """The query of an example image (a posted photo, the message shortcut): the images most like it."""
    return Query(default_k(settings, door))


@dataclass(frozen=True)
class Arguments:
    """`findimage search` as typed: the description's words or `--image`, `-k`, `--folder`, `--after`, `--before`."""

    words: Sequence[str] = ()
    image: str | None = None
    k: int | None = None
    folder: str | None = None
    after: str | None = None
    before: str | None = None


def read_arguments(arguments: Arguments, settings: QuerySettings) -> Query:
    """The command line's query: a text, or (with `--image`) an example image's, read from that file."""
    k = _k(arguments.k, ARGUMENTS) if arguments.k is not None else default_k(settings, ARGUMENTS)
    if arguments.image is not None and arguments.words:
        raise QueryError(TEXT_AND_IMAGE, option=ARGUMENTS.options["image"])
    filters = _filters(arguments.folder, arguments.after, arguments.before, ARGUMENTS)
    return Query(k, None if arguments.image is not None else " ".join(arguments.words), filters=filters)


def query_filters(folder: str | None = None, after: str | None = None, before: str | None = None) -> Filters:
    """Filters for whoever holds a query's parts already (tests, tools): checked as the command line's
    options are, dates also as the ISO starts Filters hold."""
    def typed(value: str | None) -> str | None:
        return value[:10] if value is not None and _STORED_DATE.match(value) else value
    return _filters(folder, typed(after), typed(before), ARGUMENTS)


def clean_text(text: str, max_chars: int) -> str:
    """A description on one line, checked against FINDIMAGE_MAX_QUERY_CHARS (what is read into the model)."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise QueryError(EMPTY_TEXT)
    if len(cleaned) > max_chars:
        raise QueryError(TEXT_TOO_LONG, length=len(cleaned), most=max_chars)
    return cleaned


def normalise_folder(folder: str | None) -> str | None:
    """'events/2024/' or '/events/2024' -> 'events/2024'; '' or '.' -> None (whole archive)."""
    if folder is None:
        return None
    cleaned = posixpath.normpath(folder.strip().replace("\\", "/")).strip("/")
    return None if cleaned in ("", ".") else cleaned


def date_start(text: str) -> str | None:
    """'2024', '2024-05' or '2024-05-14' -> the ISO start of that year, month or day; None if it is none."""
    found = _DATE.match(text.strip())
    if not found:
        return None
    try:
        day = date(int(found.group(1)), int(found.group(2) or 1), int(found.group(3) or 1))
    except ValueError:  # month 13, February 30th
        return None
    return day.isoformat() + "T00:00:00"


def _filters(folder: str | None, after: str | None, before: str | None, door: Door) -> Filters:
    """The folder inside the archive, the dates as ISO starts in order: each mistake in its sentence."""
    inside = normalise_folder(folder)
    if inside is not None and inside.split("/")[0] == "..":
        raise QueryError(OUTSIDE_THE_ARCHIVE, given=door.typed("folder", inside),
                         example=door.e_g("folder", "events/2024"))
    starts = {name: _date(name, value, door) for name, value in (("after", after), ("before", before))}
    if starts["after"] and starts["before"] and starts["after"] >= starts["before"]:
        raise QueryError(DATES_OUT_OF_ORDER, after=door.given("", after), before=door.given("", before),
                         option=door.example(door.options["after"].strip()),
                         example=door.example(f"{door.options['after']}2024-05 {door.options['before']}2024-07"))
    return Filters(inside, starts["after"], starts["before"])


def _date(name: str, value: str | None, door: Door) -> str | None:
    if value is None:
        return None
    start = date_start(value)
    if start is None:
        raise QueryError(NOT_A_DATE, given=door.typed(name, value), example=door.e_g(name, "2024-05"))
    return start


def _k(k: int, door: Door) -> int:
    if not 1 <= k <= door.most:
        raise QueryError(K_OUT_OF_RANGE, given=door.typed("k", k), most=door.most)
    return k


def _image_id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IMAGE_ID_CHARS:
        raise QueryError("not an image id")
    return value


def _whole(number: object) -> bool:
    return isinstance(number, int) and not isinstance(number, bool)


def _take_folder(text: str, door: Door) -> tuple[str | None, str]:
    found = list(_IN_OPTION.finditer(text))
    if len(found) > 1:
        raise QueryError(GIVEN_TWICE, option=door.example(door.options["folder"]),
                         example=door.e_g("folder", "events/2024"))
    if not found:
        return None, text
    match = found[0]
    folder = next(group for group in match.groups() if group is not None)
    return folder, text[:match.start()] + " " + text[match.end():]


def _take_k(words: list[str], door: Door) -> tuple[int | None, list[str]]:
    k, rest = None, []
    for word in words:
        option = _K_OPTION.match(word)
        if option is None:
            rest.append(word)
            continue
        value = option.group(1)
        if not value.isdigit():
            raise QueryError(K_OUT_OF_RANGE, given=door.typed("k", value), most=door.most)
        k = _k(int(value), door)
    return k, rest


def _take_dates(words: list[str], door: Door) -> tuple[dict[str, str], list[str]]:
    """`after:2024-05` and `before:2024-07` (or `nach:` and `vor:`), each at most once (checked as dates by
    _filters)."""
    dates: dict[str, str] = {}
    rest = []
    for word in words:
        option = _DATE_OPTION.match(word)
        if option is None:
            rest.append(word)
            continue
        typed, value = option.group(1).lower(), option.group(2)
        name = _DATE_NAMES[typed]
        if date_start(value) is None:  # said with the option as it was typed
            raise QueryError(NOT_A_DATE, given=door.given(f"{typed}:", value), example=door.example(f"{typed}:2024-05"))
        if name in dates:
            raise QueryError(GIVEN_TWICE, option=door.example(door.options[name]),
                             example=door.e_g(name, "2024-05"))
        dates[name] = value
    return dates, rest

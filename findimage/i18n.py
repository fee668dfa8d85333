"""The language the bot speaks to a person, and its sentences, numbers and dates in that language.

Every sentence a Slack user can read is written in English in the code, marked for extraction
(`language._(...)`, `language.ngettext(...)` where it is said, `N_(...)` where it is defined and said
elsewhere) and translated from the gettext catalogues in `findimage/locale/<language>/LC_MESSAGES/`
(`make messages` extracts them with Babel; docs/development.md). English needs no catalogue: the code's
sentences are English. The command line is not translated: whoever runs it reads the logs in English too.

Which language a person gets is decided here only (`choose`): FINDIMAGE_LANGUAGE (`de`, `en`) for the
whole workspace, or (`auto`) German for a Slack locale of German (`de-DE`, `de-AT`, ...), else English.
"""
from __future__ import annotations

import functools
import gettext
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

DOMAIN = "findimage"
LOCALE_DIR = Path(__file__).parent / "locale"
ENGLISH, GERMAN = "en", "de"
LANGUAGES = (ENGLISH, GERMAN)  # those the bot speaks; English is the code's own
SETTING_CHOICES = ("auto", GERMAN, ENGLISH)  # FINDIMAGE_LANGUAGE
# How a day is written in a sentence ("posted on 5 Mar 2024"), per language (CLDR patterns).
DAY_PATTERNS = {ENGLISH: "d MMM y", GERMAN: "d. MMM y"}


def N_(message: str) -> str:
    """Marks a sentence for extraction where it is defined; it is translated where it is said."""
    return message


def choose(setting: str, locale: str | None) -> str:
    """The language for a person: FINDIMAGE_LANGUAGE's `de` or `en` for everyone; with `auto`, German
    for a Slack locale of German (`de-DE`; an IETF tag), English for any other or none."""
    if setting in LANGUAGES:
        return setting
    primary = (locale or "").strip().replace("_", "-").split("-")[0].lower()
    return GERMAN if primary == GERMAN else ENGLISH


@dataclass(frozen=True)
class Language:
    """One language's sentences (gettext), numbers and dates (Babel). Placeholders are `{name}`
    (str.format), filled after translation so a translation may reorder them."""

    code: str
    translations: gettext.NullTranslations = field(repr=False, compare=False)

    def _(self, message: str, /, **values: object) -> str:
        text = self.translations.gettext(message)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, count: int, /, **values: object) -> str:
        """The form for `count` by the language's plural rule; `{count}` is the count as the language writes it."""
        text = self.translations.ngettext(singular, plural, count)
        return text.format(count=self.number(count), **values)

    def number(self, value: float) -> str:
        """1,234 in English, 1.234 in German."""
        return format_decimal(value, locale=self.code)

    def day(self, when: date | datetime) -> str:
        """5 Mar 2024, 5. März 2024."""
        return format_date(when, DAY_PATTERNS[self.code], locale=self.code)


class Translatable(Exception):
    """A failure whose message is one sentence of the catalogues: English with `{name}` placeholders for
    `values`, filled in English as the message (logs, the command line), and in another language by `said_in`."""

    def __init__(self, sentence: str, /, **values: object):
        super().__init__(sentence.format(**values) if values else sentence)
        self.sentence, self.values = sentence, values

    def said_in(self, language: Language) -> str:
        """The sentence in `language` (as it is where the catalogue has none: reasons only logs show)."""
        return language._(self.sentence, **self.values)


@functools.cache
def language(code: str) -> Language:
    """The language by its code (one of LANGUAGES), its catalogue read once per process."""
    if code == ENGLISH:
        return Language(ENGLISH, gettext.NullTranslations())
    if code not in LANGUAGES:
        raise ValueError(f"findimage does not speak {code!r}")
    return Language(code, _translations(code))


def _translations(code: str) -> gettext.GNUTranslations:
    # Compiled here from the .po with Babel's own reader and writer rather than shipped as a committed .mo:
    # the .po is the one source (reviewed, diffed), nothing compiled can fall out of step with it, and it
    # takes a few milliseconds once per process. Fuzzy entries are left out, as msgfmt leaves them out.
    with open(LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as source:
        catalogue = read_po(source, locale=code, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def english() -> Language:
    return language(ENGLISH)

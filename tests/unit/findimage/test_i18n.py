"""Which language a person is answered in, and how that language writes counts and days."""
from __future__ import annotations

from datetime import date

import pytest

from findimage.i18n import ENGLISH, GERMAN, Translatable, choose, language
from findimage.query import QueryError, command_door, read_command


@pytest.mark.parametrize(("setting", "locale", "spoken"), [
    ("auto", "de-DE", GERMAN), ("auto", "de-AT", GERMAN), ("auto", "de_CH", GERMAN), ("auto", "DE", GERMAN),
    ("auto", "en-US", ENGLISH), ("auto", "fr-FR", ENGLISH), ("auto", "dsb-DE", ENGLISH), ("auto", None, ENGLISH),
    ("auto", "", ENGLISH), ("en", "de-DE", ENGLISH), ("de", "en-US", GERMAN), ("de", None, GERMAN),
])
def test_german_for_a_german_slack_locale_english_otherwise_unless_the_setting_names_one(setting, locale, spoken):
    assert choose(setting, locale) == spoken


def test_each_language_writes_counts_plurals_and_days_its_own_way():
    german, english = language(GERMAN), language(ENGLISH)
    assert german.ngettext("about {count} hour", "about {count} hours", 1) == "etwa 1 Stunde"
    assert german.ngettext("about {count} hour", "about {count} hours", 3) == "etwa 3 Stunden"
    assert english.ngettext("about {count} hour", "about {count} hours", 1) == "about 1 hour"
    assert english.number(12345) == "12,345" and german.number(12345) == "12.345"
    assert english.day(date(2024, 3, 5)) == "5 Mar 2024" and german.day(date(2024, 3, 5)) == "5. März 2024"
    with pytest.raises(ValueError):
        language("fr")


def test_a_query_mistake_is_english_as_raised_and_german_when_said_to_a_german_user():
    door = command_door(lambda text: f"`{text}`")

    class Settings:
        top_k, max_results = 5, 50

    with pytest.raises(QueryError) as caught:
        read_command("in:../secrets Berg", Settings, door)
    assert isinstance(caught.value, Translatable)
    assert str(caught.value) == ("`in:../secrets` is outside the archive; name a folder inside it, e.g. "
                                 "`in:events/2024`.")
    assert caught.value.said_in(language(GERMAN)) == (
        "`in:../secrets` liegt außerhalb des Archivs; nenne einen Ordner darin, z. B. `in:events/2024`.")


def test_german_date_options_are_read_as_the_english_ones():
    door = command_door(lambda text: f"`{text}`")

    class Settings:
        top_k, max_results = 5, 50

    german = read_command("nach:2024-05 vor:2024-07 Sommerfest", Settings, door)
    assert german == read_command("after:2024-05 before:2024-07 Sommerfest", Settings, door)
    with pytest.raises(QueryError, match="Give `after:` at most once"):
        read_command("nach:2024 after:2023 Sommerfest", Settings, door)

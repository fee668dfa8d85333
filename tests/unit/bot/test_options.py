"""How the text after `/findimage` is read: the description, `k=N` and `in:<folder>`, wherever they are."""
from __future__ import annotations

import dataclasses

import pytest

from bot.options import IN_SLACK, wants_help
from findimage.config import Settings
from findimage.query import Filters, Query, QueryError, read_command

SETTINGS = dataclasses.replace(Settings(), top_k=5)


def asked(text: str, k: int, folder: str | None) -> Query:
    return Query(k, text, filters=Filters(folder))


@pytest.mark.parametrize("typed, expected", [
    ("stage with red lights", asked("stage with red lights", 5, None)),
    ("in:events/2024 k=8 stage with red lights", asked("stage with red lights", 8, "events/2024")),
    ("stage k=3 with in:/events/2024/ red lights", asked("stage with red lights", 3, "events/2024")),
    ('in:"Summer party 2023" K=2 drinks', asked("drinks", 2, "Summer party 2023")),
    ("in:“Summer party” dancing", asked("dancing", 5, "Summer party")),
    ("ein schneebedeckter Berg", asked("ein schneebedeckter Berg", 5, None)),
    ("fish &amp; chips &lt;3", asked("fish & chips <3", 5, None)),
    ("k=10 join:us", asked("join:us", 10, None)),
])
def test_options_are_taken_out_of_the_description(typed, expected):
    assert read_command(typed, SETTINGS, IN_SLACK) == expected


@pytest.mark.parametrize("typed, complaint", [
    ("k=0 cats", "`k=0` must be a whole number from 1 to 10"),
    ("k=11 cats", "`k=11` must be a whole number from 1 to 10"),
    ("k=many cats", "`k=many` must be a whole number"),
    ("in:a in:b cats", "Give `in:` at most once"),
    ("in:../secrets cats", "outside the archive"),
    ("k=3 in:events", "Add what to look for"),
])
def test_option_mistakes_say_how_to_fix_them(typed, complaint):
    with pytest.raises(QueryError, match=complaint):
        read_command(typed, SETTINGS, IN_SLACK)


def test_help_is_asked_with_nothing_or_help_words():
    assert all(wants_help(t) for t in ("", "   ", "help", "HELP", "?", "--help"))
    assert not wants_help("help desk photos")


def test_a_configured_top_k_above_what_slack_shows_is_capped():
    assert read_command("cats", dataclasses.replace(Settings(), top_k=50), IN_SLACK).k == 10

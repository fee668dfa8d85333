"""The same mistake gets the same sentence whichever door the query came by: `/findimage`'s text, a button's
value sent back by whoever clicks, or `findimage search`'s arguments (each spelling the option as it is
typed there)."""
from __future__ import annotations

import json

import pytest

from bot.buttons import BadButton, read_show_more
from bot.options import IN_SLACK
from findimage.query import (
    K_OUT_OF_RANGE,
    MAX_ADMIN_K,
    MAX_K,
    NOT_A_DATE,
    OUTSIDE_THE_ARCHIVE,
    QueryError,
    read_command,
)
from findimage_cli import EXIT_USAGE, main


def said_by_command(settings, text: str) -> str:
    with pytest.raises(QueryError) as refused:
        read_command(text, settings, IN_SLACK)
    return str(refused.value)


def said_by_button(settings, **state) -> str:
    with pytest.raises(BadButton) as refused:
        read_show_more(json.dumps({"k": 3, "s": 3, "t": "cats", **state}), settings)
    return str(refused.value)


def said_by_cli(capsys, *argv: str) -> str:
    assert main(["search", "cats", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("findimage: ") and err.endswith("\n")
    return err.removeprefix("findimage: ").removesuffix("\n")


def test_a_k_too_large_gets_one_sentence_through_every_door(settings, capsys):
    assert said_by_command(settings, "k=11 cats") == said_by_button(settings, k=11) == \
        K_OUT_OF_RANGE.format(given="`k=11`", most=MAX_K)
    assert said_by_cli(capsys, "-k", "1001") == K_OUT_OF_RANGE.format(given="-k 1001", most=MAX_ADMIN_K)


def test_a_date_that_is_none_gets_one_sentence_through_every_door(settings, capsys):
    assert said_by_command(settings, "after:2024-13 cats") == said_by_button(settings, o={"after": "2024-13"}) == \
        NOT_A_DATE.format(given="`after:2024-13`", example="`after:2024-05`")
    assert said_by_cli(capsys, "--after", "2024-13") == NOT_A_DATE.format(given="--after '2024-13'",
                                                                           example="--after 2024-05")


def test_a_folder_outside_the_archive_gets_one_sentence_through_every_door(settings, capsys):
    assert said_by_command(settings, "in:../secrets cats") == said_by_button(settings, f="../secrets") == \
        OUTSIDE_THE_ARCHIVE.format(given="`in:../secrets`", example="`in:events/2024`")
    assert said_by_cli(capsys, "--folder", "../secrets") == OUTSIDE_THE_ARCHIVE.format(
        given="--folder '../secrets'", example="--folder events/2024")

"""A query as the doors read it: the command's text, a button's value written by the query itself, a posted
image's, the command line's arguments; each mistake told in its one sentence, spelled as the door types it."""
from __future__ import annotations

import dataclasses
import json

import pytest

from findimage.config import Settings
from findimage.query import (
    ARGUMENTS,
    EVERYWHERE,
    MAX_ADMIN_K,
    MAX_K,
    Arguments,
    Filters,
    Query,
    QueryError,
    command_door,
    example_query,
    read_arguments,
    read_command,
    read_compact,
    read_duplicates,
    read_image_id,
)

SETTINGS = dataclasses.replace(Settings(), top_k=5, max_results=50)
COMMAND = command_door(lambda typed: f"`{typed}`")


def test_a_query_written_into_a_button_reads_back_as_the_same_query():
    for query in (Query(3, "stage with red lights", filters=Filters("events/2024", "2024-05-01T00:00:00",
                                                                       "2024-07-01T00:00:00"), skip=6),
                  Query(5, image_id="a" * 24, skip=5), Query(2, "Straße & <Bühne>")):
        assert read_compact(query.compact(), SETTINGS, COMMAND) == query
    assert json.loads(Query(5, image_id="abc", skip=5).compact()) == {"k": 5, "s": 5, "i": "abc"}


def test_show_more_pages_on_until_the_last_allowed_result():
    first = Query(5, "cats")
    assert first.following(5, 50) == Query(5, "cats", skip=5)
    assert Query(5, "cats", skip=45).following(5, 50) is None, "results 46 to 50 were the last"
    assert Query(5, "cats", skip=40).following(5, 48) == Query(3, "cats", skip=45)
    assert first.following(4, 50) is None, "a page that was not full was the last"
    assert example_query(SETTINGS, COMMAND).following(5, 50) is None, "an example image is not kept"


def test_where_none_is_named_a_door_asks_for_the_settings_k_up_to_its_limit():
    many = dataclasses.replace(SETTINGS, top_k=50)
    assert read_command("cats", many, COMMAND).k == MAX_K
    assert read_image_id("a" * 24, many, COMMAND) == Query(MAX_K, image_id="a" * 24)
    assert example_query(many, COMMAND) == Query(MAX_K)
    assert read_arguments(Arguments(["cats"]), many) == Query(50, "cats")
    assert read_arguments(Arguments(["cats"], k=MAX_ADMIN_K), many).k == MAX_ADMIN_K


def test_the_command_line_reads_a_text_or_an_image_with_its_filters():
    assert read_arguments(Arguments(["stage", "lights"], folder="/events/2024/", after="2024-05"), SETTINGS) == \
        Query(5, "stage lights", filters=Filters("events/2024", "2024-05-01T00:00:00"))
    assert read_arguments(Arguments(image="photo.jpg"), SETTINGS) == Query(5, filters=EVERYWHERE)
    with pytest.raises(QueryError, match="^Give either a text or --image, not both.$"):
        read_arguments(Arguments(["cats"], image="photo.jpg"), SETTINGS)


@pytest.mark.parametrize("arguments, sentence", [
    (Arguments(["cats"], k=0), "-k 0 must be a whole number from 1 to 1000 (how many images to show)."),
    (Arguments(["cats"], after="2024-13"),
     "--after '2024-13' is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. --after 2024-05."),
    (Arguments(["cats"], folder="../secrets"),
     "--folder '../secrets' is outside the archive; name a folder inside it, e.g. --folder events/2024."),
    (Arguments(["cats"], after="2024-07", before="2024-05"),
     "Nothing is both on or after '2024-07' and before '2024-05': the after date must come first, so put the "
     "earlier date in --after, e.g. --after 2024-05 --before 2024-07."),
])
def test_the_command_line_spells_the_options_as_they_are_typed_there(arguments, sentence):
    with pytest.raises(QueryError) as refused:
        read_arguments(arguments, SETTINGS)
    assert str(refused.value) == sentence


def test_only_what_the_query_itself_writes_is_read_back_from_a_button():
    def value(**state) -> str:
        return json.dumps({"k": 3, "s": 3, "t": "stage", **state})

    for forged in (value(k=11), value(k=True), value(s=-1), value(x=1), value(f="events//2024"),
                   value(o={"after": "2024-05-01T00:00:00"}), value(o={"skip": 3}), value(t=" "),
                   value(i="a" * 24), json.dumps({"k": 3, "s": 3, "i": "a" * 24, "o": {"after": "2024"}}),
                   value(s=48), "[" * 1500, "not json"):
        with pytest.raises(QueryError):
            read_compact(forged, SETTINGS, COMMAND)
    assert read_compact(value(s=47), SETTINGS, COMMAND).skip == 47


def test_a_query_is_one_thing_or_another_never_both():
    with pytest.raises(ValueError):
        Query(3, "cats", image_id="a" * 24)
    with pytest.raises(ValueError):
        Query(0, "cats")
    assert ARGUMENTS.most == MAX_ADMIN_K and COMMAND.most == MAX_K


def test_duplicates_asks_for_the_report_of_the_whole_archive_or_one_folder():
    assert read_duplicates("duplicates", COMMAND) == EVERYWHERE
    assert read_duplicates("  Duplicates  in:events/2024/ ", COMMAND) == Filters("events/2024")
    assert read_duplicates('in:"Summer party" duplicates', COMMAND) == Filters("Summer party")
    assert read_duplicates("duplicate stage lights", COMMAND) is None, "a search"
    assert read_duplicates("red duplicates", COMMAND) is None
    with pytest.raises(QueryError) as refused:
        read_duplicates("duplicates of the summer party", COMMAND)
    assert str(refused.value) == "Only a folder may follow `duplicates`, e.g. `duplicates in:events/2024`."
    with pytest.raises(QueryError, match="outside the archive"):
        read_duplicates("duplicates in:../secrets", COMMAND)

"""Button values as anyone can send them: a click carries its value back, and a value the bot did not
write (unknown fields or options, wrong types, pages past FINDIMAGE_MAX_RESULTS, dates the options would
refuse) gets the one sentence for an unreadable button and no search."""
from __future__ import annotations

import json

from bot_support import ALICE, CHANNEL

from bot.handlers.actions import UNREADABLE


def buttons_post(emu, index: int = 0):
    def found():
        posts = sorted((p for p in [*emu.responses(), *emu.messages()]
                        if p.blocks and any(b.get("type") == "actions" for b in p.blocks)), key=lambda p: p.at)
        return posts[index] if len(posts) > index else None

    return emu.wait_for(found, 15, f"buttons message #{index + 1}")


def click(emu, bot, post, action_id: str, value: str):
    """`value` sent back as the clicked button's value; the response URL the bot must answer on."""
    payload = emu.block_actions_payload(post, action_id, ALICE)
    payload["actions"][0]["value"] = value
    assert emu.send_interaction(bot.events_url, payload).status == 200
    return payload["response_url"]


def show_more(**state) -> str:
    return json.dumps({"k": 3, "s": 3, "t": "stage with red lights", **state})


FORGED_SHOW_MORE = [
    show_more(k=11),  # more than a command may ask for
    show_more(k=0),
    show_more(k=3, s=48),  # past FINDIMAGE_MAX_RESULTS (50)
    show_more(s=-3),
    show_more(k="3"),
    show_more(k=True),
    show_more(k=3.0),
    show_more(s=None),
    show_more(x=1),  # an unknown field
    show_more(o={"skip": 40}),  # an unknown option: never keyword arguments of the search
    show_more(o={"k": 50}),
    show_more(o={"after": "2024-05-01T00:00:00"}),  # the stored form, which the options never take
    show_more(o={"after": "2024-13"}),
    show_more(o={"after": 2024}),
    show_more(o={"after": "2024-07", "before": "2024-05"}),
    show_more(o=["after", "2024"]),
    show_more(f="../../etc"),
    show_more(f="events//2024"),
    show_more(f=7),
    show_more(t=["stage"]),
    show_more(t=""),
    show_more(i="a" * 24),  # both a text and an image
    json.dumps({"k": 3, "s": 3}),  # neither
    json.dumps({"k": 3, "s": 3, "i": "a" * 65}),
    json.dumps({"k": 3, "s": 3, "i": "a" * 24, "o": {"after": "2024"}}),
    json.dumps({"k": 3}),
    json.dumps([3, 3, "stage"]),
    "[" * 1500,
    "x" * 2001,
    "not json",
]


def test_forged_show_more_and_more_like_values_get_one_sentence_and_no_search(bot, emu):
    emu.send_slash_command(bot.events_url, text="k=3 stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    post = buttons_post(emu)

    answers = {}
    for value in FORGED_SHOW_MORE:
        note = emu.wait_for_response(click(emu, bot, post, "show_more", value), timeout=15)
        answers[value[:80]] = (note.ephemeral, note.text)
    too_long_id = emu.wait_for_response(click(emu, bot, post, "more_like_this:1", "a" * 65), timeout=15)

    assert answers == {value[:80]: (True, UNREADABLE) for value in FORGED_SHOW_MORE}
    assert (too_long_id.ephemeral, too_long_id.text) == (True, UNREADABLE)
    assert len(emu.uploads(CHANNEL)) == 1, "no forged value was searched"


def test_values_as_the_bot_writes_them_still_page_on_up_to_the_last_allowed_page(bot, emu):
    emu.send_slash_command(bot.events_url, text="k=3 stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    post = buttons_post(emu)

    click(emu, bot, post, "show_more", show_more(o={"after": "1990", "before": "2100-01-01"}))
    page_2 = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], 15, "page 2")[0]
    last_page = emu.wait_for_response(click(emu, bot, post, "show_more", show_more(s=47, f="events")), timeout=15)

    assert len(page_2.files) == 3 and "results 4 to 6" in page_2.initial_comment
    assert last_page.text == "There are no further matches for this query.", "results 48 to 50 may be asked for"

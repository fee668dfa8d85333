"""People are answered in their Slack language: German for a `de-*` locale, English otherwise, unless
FINDIMAGE_LANGUAGE names one language for the whole workspace. The bot runs for real over HTTP against the
Slack emulator, whose users.info tells each person's locale when asked with include_locale."""
from __future__ import annotations

import re

from bot_support import ALICE, BOB, CHANNEL, serve_bot, with_settings
from photos import jpeg_bytes
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from findimage.i18n import GERMAN, language

GERMAN_HELP = "*Bilder im Archiv des Teams finden*"
ENGLISH_HELP = "*Find images in the team's archive*"


def ack_text(ack) -> str:
    """What the requester sees from the ack: Bolt answers text-only acks as plain text, others as JSON."""
    return ack.json()["text"] if ack.headers.get("Content-Type", "").startswith("application/json") else ack.body


def command(emu, bot, text, user):
    return ack_text(emu.send_slash_command(bot.events_url, text=text, user_id=user, channel_id=CHANNEL))


def valid_blocks(blocks: list[dict]) -> None:
    for block in blocks:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError on a field over Slack's limits


def test_a_german_user_gets_german_help_refusals_and_answers_and_an_english_user_english(bot, emu):
    emu.add_user(ALICE, locale="de-DE")
    emu.add_user(BOB, locale="en-US")

    assert GERMAN_HELP in command(emu, bot, "help", ALICE)
    assert ENGLISH_HELP in command(emu, bot, "help", BOB)
    assert command(emu, bot, "after:2024-13 Berg", ALICE) == (
        "`after:2024-13` ist kein Datum: Nutze YYYY, YYYY-MM oder YYYY-MM-DD, z. B. `after:2024-05`.")
    assert command(emu, bot, "after:2024-13 mountain", BOB) == (
        "`after:2024-13` is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. `after:2024-05`.")
    assert command(emu, bot, "nach:2024-13 Berg", ALICE).startswith("`nach:2024-13` ist kein Datum")

    assert command(emu, bot, "eine Bühne mit roten Lichtern", ALICE) == (
        "Ich durchsuche das Archiv nach `eine Bühne mit roten Lichtern`…")
    german = emu.wait_for_upload(CHANNEL, timeout=20)
    buttons = emu.wait_for_response(containing="Ähnlich wie #1", timeout=15)  # through the response_url
    assert command(emu, bot, "stage with red lights", BOB) == "Searching the archive for `stage with red lights`…"
    english = emu.wait_for(lambda: emu.uploads(CHANNEL)[1:], timeout=20, what="Bob's answer")[0]

    # The answer is posted to the whole channel, in the language of whoever asked.
    assert german.initial_comment.startswith(f"<@{ALICE}> hat das Archiv nach `eine Bühne mit roten Lichtern` "
                                             "durchsucht:")
    assert english.initial_comment.startswith(f"<@{BOB}> searched the archive for `stage with red lights`:")
    assert buttons.text == "Ähnliche wie eines davon, oder mehr davon?"
    labels = [e["text"]["text"] for b in buttons.blocks if b["type"] == "actions" for e in b["elements"]]
    assert labels[:2] == ["Ähnlich wie #1", "Ähnlich wie #2"] and labels[-1] == "Mehr zeigen"
    valid_blocks(buttons.blocks)
    # One users.info per person (with the locale), shared with the team check and cached.
    calls = emu.api_calls("users.info")
    assert sorted(c.params["user"] for c in calls) == [ALICE, BOB]
    assert all(str(c.params.get("include_locale")).lower() in ("1", "true") for c in calls)


def test_findimage_language_en_answers_a_german_user_in_english_without_asking_slack(indexed, emu):
    emu.add_user(ALICE, locale="de-DE")
    with serve_bot(with_settings(indexed, language="en")) as bot:
        assert ENGLISH_HELP in command(emu, bot, "help", ALICE)
        assert command(emu, bot, "k=99 Berg", ALICE).endswith("must be a whole number from 1 to 10 (how many "
                                                              "images to show).")
        assert command(emu, bot, "Berg", ALICE) == "Searching the archive for `Berg`…"
        answer = emu.wait_for_upload(CHANNEL, timeout=20)
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive for `Berg`:")
    assert emu.api_calls("users.info") == [], "the command names the team; the setting names the language"


def test_findimage_language_de_answers_everyone_in_german(indexed, emu):
    emu.add_user(BOB, locale="en-US")
    with serve_bot(with_settings(indexed, language="de")) as bot:
        assert GERMAN_HELP in command(emu, bot, "help", BOB)


def test_a_german_users_posted_photo_remembering_and_home_tab_are_in_german(bot, emu):
    emu.add_user(ALICE, locale="de-AT")
    photo = emu.add_file(jpeg_bytes(seed=931), "gipfel.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    emu.send_event(bot.events_url, posted)
    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=20)
    assert answer.initial_comment.startswith("Archivbilder, die `gipfel.jpg` am ähnlichsten sind:")

    command(emu, bot, "remember", ALICE)
    turned_on = emu.wait_for_response(containing="hat das Merken", timeout=15)
    assert not turned_on.ephemeral, "said to the whole channel, in the language of whoever turned it on"
    assert turned_on.visible_text.startswith(f"<@{ALICE}> hat das Merken für diesen Kanal eingeschaltet: Bilder, "
                                             "die ab jetzt hier gepostet werden, und die der letzten 90 Tage")
    command(emu, bot, "remember status", ALICE)
    status = emu.wait_for_response(containing="Ich merke mir", timeout=15).visible_text
    assert re.search(r"seit dem \d{1,2}\. \w+\.? \d{4} \(eingeschaltet von <@U0ALICE>\): bisher \d+ Bild", status)

    emu.send_event(bot.events_url, emu.app_home_opened(ALICE))
    home = emu.wait_for_view(ALICE, timeout=15)
    assert "*Indizierte Bilder:* 7" in home.visible_text and GERMAN_HELP in home.visible_text
    examples = [e["value"] for b in home.blocks if b["type"] == "actions" for e in b["elements"]]
    assert examples[0] == language(GERMAN)._("a snow covered mountain") == "ein schneebedeckter Berg"
    View(type="home", blocks=home.blocks).validate_json()
    click = emu.send_interaction(bot.events_url, emu.block_actions_payload(home, "home_example:1", ALICE))
    assert click.status == 200
    example = emu.wait_for_upload(emu.dm_channel(ALICE), timeout=20)
    assert example.initial_comment.startswith(f"<@{ALICE}> hat das Archiv nach `ein schneebedeckter Berg` durchsucht:")


def test_a_rate_limited_locale_look_up_does_not_hold_the_ack_back_it_is_english_once(bot, emu):
    """Slack waits 3 s for an ack: the look-up before it is not retried after a 429's Retry-After (5 s here);
    the ack is English this once, and the next command, looked up anew, German."""
    emu.add_user(ALICE, locale="de-DE")
    emu.rate_limit("users.info", times=1, retry_after=5)

    assert ENGLISH_HELP in command(emu, bot, "help", ALICE)
    assert GERMAN_HELP in command(emu, bot, "help", ALICE)
    assert [c.status for c in emu.api_calls("users.info")] == [429, 200]

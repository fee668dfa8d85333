"""`/findimage <text>` as people in a channel use it, over HTTP, against the Slack emulator.

The bot runs for real: its WSGI app on a threaded HTTP server, the embedded store indexed from the
`archive` fixture with the tiny test models, and Slack played by the emulator.
"""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bot_support import (
    ALICE,
    BOB,
    CHANNEL,
    assert_answers_held,
    assert_same_ranking,
    image_size,
    reference_text_ranking,
    serve_bot,
    with_settings,
)

from bot.delivery import BUTTONS_TEXT
from findimage import __version__

RANKED_LINE = re.compile(r"^\*(\d+)\.\* `(\d\.\d{3})` `([^`]+)`", re.MULTILINE)


def ranked(comment: str) -> list[tuple[int, float, str]]:
    return [(int(rank), float(score), path) for rank, score, path in RANKED_LINE.findall(comment)]


def ack_text(ack) -> str:
    """What the requester sees from the ack: Bolt answers text-only acks as plain text, others as JSON."""
    return ack.json()["text"] if ack.headers.get("Content-Type", "").startswith("application/json") else ack.body


def http_get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def shown_ranking(comment: str) -> list[tuple[str, float]]:
    return [(path, score) for _, score, path in ranked(comment)]


def test_a_slash_command_is_acked_before_its_answer_then_posts_the_top_images_for_everyone(held_bot, emu, indexed):
    bot = held_bot
    query = "a concert under red lights"  # no archive-path word in it: the ranking is CLIP's alone
    expected = reference_text_ranking(indexed, query, 5)

    ack = emu.send_slash_command(bot.events_url, text=query, user_id=ALICE, channel_id=CHANNEL)
    assert ack.status == 200
    assert ack_text(ack) == f"Searching the archive for `{query}`…"  # only Alice sees this
    assert_answers_held(bot.work, emu, 1)  # the ack came back while its answer had not even started
    bot.work.release()
    answer = emu.wait_for_upload(CHANNEL, timeout=15)

    assert answer.thread_ts is None, "a command's results go to the channel itself"
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive for `{query}`:")
    shown = ranked(answer.initial_comment)
    assert_same_ranking(shown_ranking(answer.initial_comment), expected)
    assert [rank for rank, _, _ in shown] == [1, 2, 3, 4, 5]
    assert len(answer.files) == 5 and all(f.mimetype == "image/jpeg" for f in answer.files)
    first_path, first_score = shown[0][2], shown[0][1]
    assert answer.files[0].title == f"1. {first_path} · {first_score:.3f}"
    # the archive's photos are 640x480 (events) and 320x240 (nature): small photos are sent as they are
    sizes = {"events": (640, 480), "nature": (320, 240)}
    assert [image_size(f.content) for f in answer.files] == [sizes[p.split("/")[0]] for _, _, p in shown]
    assert "Uncertain" not in answer.initial_comment
    assert emu.api_calls("files.upload") == [], "the retired upload method is never used"
    assert len(emu.api_calls("files.completeUploadExternal")) == 1, "one files_upload_v2 call"


def test_a_query_in_another_language_and_script_arrives_intact(bot, emu, indexed):
    for n, text in enumerate(["ein schneebedeckter Berg über dem Tal", "雪に覆われた山", "гора в снегу"]):
        expected = reference_text_ranking(indexed, text, 5)
        emu.send_slash_command(bot.events_url, text=text, channel_id=f"C0LANG{n}")
        answer = emu.wait_for_upload(f"C0LANG{n}", timeout=15)
        assert f"`{text}`" in answer.initial_comment
        assert_same_ranking(shown_ranking(answer.initial_comment), expected)


def test_help_and_an_empty_command_answer_privately_with_the_usage(bot, emu):
    empty = emu.send_slash_command(bot.events_url, text="", user_id=ALICE, channel_id=CHANNEL)
    help_ = emu.send_slash_command(bot.events_url, text="  help ", user_id=ALICE, channel_id=CHANNEL)
    emu.send_slash_command(bot.events_url, text="mountain", user_id=BOB, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)  # the next command was answered, so the first two are done
    emu.wait_for_response(containing=BUTTONS_TEXT, timeout=15)

    for ack in (empty, help_):
        assert ack.status == 200
        usage = ack_text(ack)
        assert "k=8" in usage and "in:events/2024" in usage and "Post a photo" in usage
    assert len(emu.uploads()) == 1 and emu.messages() == [] and [r.text for r in emu.responses()] == [BUTTONS_TEXT]


def test_k_and_in_options_choose_how_many_images_and_from_which_folder(bot, emu):
    emu.send_slash_command(bot.events_url, text="in:events/2024 k=3 stage with red lights", channel_id=CHANNEL)
    in_events = emu.wait_for_upload(CHANNEL, timeout=15)
    emu.send_slash_command(bot.events_url, text="k=2 mountain in:nature/", channel_id="C0OTHER")
    in_nature = emu.wait_for_upload("C0OTHER", timeout=15)

    assert "`stage with red lights` in `events/2024`:" in in_events.initial_comment
    assert len(in_events.files) == 3 and all(
        p.startswith("events/2024/") for *_, p in ranked(in_events.initial_comment)
    )
    assert len(in_nature.files) == 2 and all(p.startswith("nature/") for *_, p in ranked(in_nature.initial_comment))


def test_option_mistakes_and_an_empty_folder_are_explained_to_the_requester_only(bot, emu):
    too_many = emu.send_slash_command(bot.events_url, text="k=99 red lights", user_id=ALICE, channel_id=CHANNEL)
    only_options = emu.send_slash_command(bot.events_url, text="in:events k=2", user_id=ALICE, channel_id=CHANNEL)
    nowhere = emu.send_slash_command(bot.events_url, text="in:holidays/1999 beach", user_id=ALICE, channel_id=CHANNEL)
    long_query = emu.send_slash_command(bot.events_url, text="word " * 300, user_id=ALICE, channel_id=CHANNEL)

    assert "`k=99` must be a whole number from 1 to 10" in ack_text(too_many)
    assert "Add what to look for" in ack_text(only_options)
    empty_folder = emu.wait_for_response(nowhere.response_url, containing="holidays/1999")
    too_long = emu.wait_for_response(long_query.response_url, containing="too long")
    assert empty_folder.ephemeral and empty_folder.text == "No indexed images under the folder 'holidays/1999'."
    assert too_long.ephemeral and "at most 1,000" in too_long.text
    assert emu.uploads() == [] and emu.messages() == []


def test_weak_best_matches_are_presented_as_uncertain(indexed, emu):
    with serve_bot(with_settings(indexed, weak_score=0.95)) as bot:
        emu.send_slash_command(bot.events_url, text="a snow covered peak", channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=15)

    assert "_Uncertain: even the best match scores only 0." in answer.initial_comment
    assert "(below 0.95), so these are guesses rather than answers._" in answer.initial_comment
    assert len(answer.files) == 5


def test_an_archive_that_is_not_indexed_yet_is_said_so(bot_settings, emu):
    with serve_bot(bot_settings) as bot:
        ack = emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id=CHANNEL)
        reply = emu.wait_for_response(ack.response_url, timeout=15)

    assert reply.ephemeral and reply.text.startswith("The archive is not indexed yet")
    assert emu.uploads() == []


def test_echoed_queries_cannot_ping_the_channel(bot, emu):
    # Slack escapes &, < and > in command text; the bot must not turn them back into a live @channel.
    emu.send_slash_command(bot.events_url, text="&lt;!channel&gt; party &amp; lights", channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=15)

    assert "`&lt;!channel&gt; party &amp; lights`" in answer.initial_comment
    assert "<!channel>" not in answer.initial_comment


def test_forged_and_stale_signatures_get_401_and_no_answer(bot, emu):
    forged = emu.send_slash_command(bot.events_url, text="red lights", signing_secret="guessed-secret")
    stale = emu.send_slash_command(bot.events_url, text="red lights", timestamp=int(time.time()) - 10 * 60)
    photo = emu.add_file(b"not even looked at", "x.png", user=ALICE)
    forged_event = emu.send_event(bot.events_url, emu.post_user_message_with_files(CHANNEL, [photo]),
                                  signing_secret="guessed-secret")
    emu.send_slash_command(bot.events_url, text="the real one", channel_id="C0REAL")
    emu.wait_for_upload("C0REAL", timeout=15)
    emu.wait_for_response(containing=BUTTONS_TEXT, timeout=15)

    assert (forged.status, stale.status, forged_event.status) == (401, 401, 401)
    assert len(emu.uploads()) == 1 and [r.text for r in emu.responses()] == [BUTTONS_TEXT] and emu.messages() == []
    assert emu.downloads(photo["id"]) == []


def test_twenty_commands_at_once_are_all_acked_before_any_answer_starts_and_then_all_answered(held_bot, emu):
    bot = held_bot
    queries = [f"picture number {n}" for n in range(20)]
    channels = [f"C0ROOM{n:02d}" for n in range(20)]
    with ThreadPoolExecutor(max_workers=20) as senders:
        acks = list(senders.map(lambda q, c: emu.send_slash_command(bot.events_url, text=q, channel_id=c),
                                queries, channels))

    assert [a.status for a in acks] == [200] * 20
    assert [ack_text(a) for a in acks] == [f"Searching the archive for `{q}`…" for q in queries]
    # every ack came back while all 20 answers were queued behind the 4 held workers
    assert_answers_held(bot.work, emu, 20)
    bot.work.release()
    emu.wait_for(lambda: len(emu.uploads()) == 20, timeout=60, what="20 answers")
    for query, channel in zip(queries, channels, strict=True):
        (answer,) = emu.uploads(channel)
        assert f"`{query}`" in answer.initial_comment and len(answer.files) == 5


def test_with_a_public_base_url_results_are_image_blocks_with_signed_expiring_links(indexed, emu):
    settings = with_settings(indexed, public_base_url="https://findimage.example.org", url_signing_key="k" * 32)
    with serve_bot(settings) as bot:
        ack = emu.send_slash_command(bot.events_url, text="stage with red lights", channel_id=CHANNEL)
        reply = emu.wait_for_response(ack.response_url, containing="searched the archive", timeout=15)
        urls = [b["image_url"] for b in reply.blocks if b["type"] == "image"]
        local = [u.replace("https://findimage.example.org", bot.base_url) for u in urls]
        served = [http_get(u) for u in local]
        tampered = http_get(re.sub(r"sig=[0-9a-f]", lambda m: "sig=" + "01"[m.group(0)[-1] == "0"], local[0]))
        guessed = http_get(f"{bot.base_url}/images/{reply.blocks[1]['image_url'].split('/')[-1].split('.')[0]}.jpg")

    assert not reply.ephemeral and emu.uploads() == []
    assert len(urls) == 5 and all(u.startswith("https://findimage.example.org/images/") for u in urls)
    assert [b["title"]["text"].split(" ")[0] for b in reply.blocks if b["type"] == "image"] == [
        "1.", "2.", "3.", "4.", "5."]
    assert all(status == 200 and headers["Content-Type"] == "image/jpeg" for status, headers, _ in served)
    assert all(max(image_size(body)) <= 1024 for *_, body in served)
    assert (tampered[0], guessed[0]) == (403, 400), "a wrong signature is refused, a link without one is malformed"


def test_image_links_are_not_served_without_a_public_base_url(bot):
    status, _, _ = http_get(f"{bot.base_url}/images/anything.jpg?expires=9999999999&sig=00")
    assert status == 404


def test_the_health_check_says_alive_and_readiness_reports_the_indexed_archive(bot):
    import json

    status, headers, body = http_get(f"{bot.base_url}/healthz")
    ready_status, ready_headers, ready_body = http_get(f"{bot.base_url}/readyz")

    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "version": __version__, "queued": 0}
    assert ready_status == 200 and ready_headers["Content-Type"] == "text/plain; charset=utf-8"
    assert ready_body == b"Ready: 7 documents in the archive.\n"


def test_slack_sees_which_findimage_calls_it(bot, emu):
    """Slack's own client name stays in the User-Agent; findimage and its version come first."""
    emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)

    agents = {call.user_agent for call in emu.api_calls()}
    assert agents and all(agent.startswith(f"findimage/{__version__} Python/") and " slackclient/" in agent
                          for agent in agents), agents

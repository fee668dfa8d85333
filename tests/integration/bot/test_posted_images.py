"""Photos posted in a channel the bot is in: answered in the message's thread, exactly once."""
from __future__ import annotations

import io
import re

from bot_support import (
    ALICE,
    CHANNEL,
    FakeClock,
    assert_answers_held,
    assert_same_ranking,
    image_size,
    reference_image_ranking,
    serve_bot,
    with_settings,
)
from photos import jpeg_bytes, save_photo
from PIL import Image

from bot.delivery import BUTTONS_TEXT
from indexer.run import index_once


def post_photo(emu, *files, text="", channel=CHANNEL, **options):
    """Alice posts files in the channel; returns the message event Slack sends about it."""
    return emu.post_user_message_with_files(channel, list(files), text=text, user=ALICE, **options)


def titled_ranking(upload) -> list[tuple[str, float]]:
    """(path, score) of each uploaded file, from titles "<rank>. <path> · <score>"."""
    return [(path, float(score)) for path, score in
            (re.fullmatch(r"\d+\. (\S+) · (\d\.\d{3})", f.title).groups() for f in upload.files)]


def test_a_posted_photo_is_acked_first_then_answered_with_the_most_similar_archive_images(held_bot, emu, indexed):
    bot = held_bot
    holiday = emu.add_file(jpeg_bytes(seed=300), "holiday.jpg", user=ALICE)
    posted = post_photo(emu, holiday, text="anyone know where this is?")
    expected = reference_image_ranking(indexed, jpeg_bytes(seed=300), 5)

    delivery = emu.send_event(bot.events_url, posted)
    assert delivery.status == 200
    assert_answers_held(bot.work, emu, 1)
    assert emu.downloads(holiday["id"]) == [], "not even downloaded before the ack"
    bot.work.release()
    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert answer.initial_comment.startswith("Archive images most similar to `holiday.jpg`:")
    assert_same_ranking(titled_ranking(answer), expected)
    assert "exact match" not in answer.initial_comment
    (download,) = emu.downloads(holiday["id"])
    assert download.authorized and download.complete


def test_a_byte_identical_copy_is_labelled_exact_match_and_shown_downscaled(bot_settings, emu):
    poster = save_photo(bot_settings.archive / "posters" / "festival.jpg", seed=400, size=(2400, 1600))
    index_once(bot_settings, progress=False)
    photo = emu.add_file(poster.read_bytes(), "IMG_2041.jpg", user=ALICE)
    with serve_bot(bot_settings) as bot:
        posted = post_photo(emu, photo)
        emu.send_event(bot.events_url, posted)
        answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    first_line = answer.initial_comment.splitlines()[1]
    assert first_line.startswith("*1.* `1.000` `posters/festival.jpg` — *exact match*")
    assert answer.files[0].title == "1. posters/festival.jpg · 1.000 (exact match)"
    assert image_size(answer.files[0].content) == (1024, 683), "a downscaled copy, long side 1024"
    assert answer.initial_comment.count("exact match") == 1


def test_several_photos_in_one_message_are_answered_together_and_other_files_ignored(bot, emu):
    first = emu.add_file(jpeg_bytes(seed=301), "first.jpg", user=ALICE)
    second = emu.add_file(jpeg_bytes(seed=302, size=(500, 700)), "second.jpg", user=ALICE)
    minutes = emu.add_file(b"%PDF-1.4 minutes of the meeting", "minutes.pdf", "application/pdf", user=ALICE)
    posted = post_photo(emu, first, minutes, second)

    emu.send_event(bot.events_url, posted)
    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    comment = answer.initial_comment
    assert comment.index("similar to `first.jpg`") < comment.index("similar to `second.jpg`")
    assert len(answer.files) == 10 and len(emu.uploads()) == 1, "one reply holding both answers"
    assert "minutes" not in comment and emu.downloads(minutes["id"]) == []


def test_a_message_with_only_other_files_is_ignored_silently(bot, emu):
    notes = emu.add_file(b"agenda", "agenda.txt", "text/plain", user=ALICE)
    ignored = post_photo(emu, notes)
    photo = emu.add_file(jpeg_bytes(seed=303), "after.jpg", user=ALICE)
    answered = post_photo(emu, photo)

    emu.send_event(bot.events_url, ignored)
    emu.send_event(bot.events_url, emu.user_message(CHANNEL, "just chatting"))
    emu.send_event(bot.events_url, answered)
    emu.wait_for_upload(CHANNEL, thread_ts=answered["ts"], timeout=15)
    emu.wait_for_message(CHANNEL, thread_ts=answered["ts"], containing=BUTTONS_TEXT, timeout=15)

    assert len(emu.uploads()) == 1 and [m.text for m in emu.messages()] == [BUTTONS_TEXT], "only the buttons"
    assert emu.downloads(notes["id"]) == []


def test_slack_retries_and_re_deliveries_are_answered_once(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=304), "retry.jpg", user=ALICE)
    posted = post_photo(emu, photo)

    first = emu.send_event(bot.events_url, posted, event_id="Ev0RETRY")
    retries = [emu.send_event(bot.events_url, posted, event_id="Ev0RETRY", retry_num=n) for n in (1, 2, 3)]
    redelivered = emu.send_event(bot.events_url, posted, event_id="Ev0OTHERID")  # same image, new event id
    emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)
    barrier = post_photo(emu, emu.add_file(jpeg_bytes(seed=305), "next.jpg", user=ALICE))
    emu.send_event(bot.events_url, barrier)
    emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=15)

    assert all(d.status == 200 for d in [first, *retries, redelivered])
    assert len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 1
    assert len(emu.downloads(photo["id"])) == 1


def test_the_bots_own_uploads_are_not_answered(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=306), "mine.jpg", user=ALICE)
    posted = post_photo(emu, photo)
    emu.send_event(bot.events_url, posted)
    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    emu.send_event(bot.events_url, emu.bot_message_event(CHANNEL, files=answer))  # Slack echoes the upload
    emu.send_event(bot.events_url, emu.bot_message_event(CHANNEL, files=answer, with_user=False))
    other = emu.add_file(jpeg_bytes(seed=307), "barrier.jpg", user=ALICE)
    barrier = post_photo(emu, other)
    emu.send_event(bot.events_url, barrier)
    emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=15)
    emu.wait_for_message(CHANNEL, thread_ts=barrier["ts"], containing=BUTTONS_TEXT, timeout=15)

    assert len(emu.uploads()) == 2 and [m.text for m in emu.messages()] == [BUTTONS_TEXT] * 2
    assert {d.file_id for d in emu.downloads()} == {photo["id"], other["id"]}, "its own files are never fetched"


def test_a_photo_posted_inside_a_thread_is_answered_in_that_thread(bot, emu):
    question = emu.user_message(CHANNEL, "Do we have more like this?", user=ALICE)
    photo = emu.add_file(jpeg_bytes(seed=308), "reply.jpg", user=ALICE)
    posted = post_photo(emu, photo, thread_ts=question["ts"])

    emu.send_event(bot.events_url, posted)

    answer = emu.wait_for_upload(CHANNEL, thread_ts=question["ts"], timeout=15)
    assert len(answer.files) == 5


def test_a_stripped_file_object_is_completed_with_files_info(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=309), "connect.jpg", user=ALICE)
    posted = post_photo(emu, photo, file_access="check_file_info")

    emu.send_event(bot.events_url, posted)

    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)
    assert [c.params["file"] for c in emu.api_calls("files.info")] == [photo["id"]]
    assert answer.initial_comment.startswith("Archive images most similar to `connect.jpg`:")


def test_with_a_public_base_url_the_thread_reply_shows_image_blocks(indexed, emu):
    settings = with_settings(indexed, public_base_url="https://findimage.example.org")
    photo = emu.add_file(jpeg_bytes(seed=310), "linked.jpg", user=ALICE)
    with serve_bot(settings) as bot:
        posted = post_photo(emu, photo)
        emu.send_event(bot.events_url, posted)
        reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing="linked.jpg", timeout=15)

    images = [b for b in reply.blocks if b["type"] == "image"]
    assert len(images) == 5 and emu.uploads() == []
    assert all(b["image_url"].startswith("https://findimage.example.org/images/") and "sig=" in b["image_url"]
               for b in images)


def test_more_than_ten_images_in_one_answer_continue_in_a_second_upload_in_the_same_thread(bot, emu):
    photos = [emu.add_file(jpeg_bytes(seed=320 + n), f"p{n}.jpg", user=ALICE) for n in range(3)]
    posted = post_photo(emu, *photos)

    emu.send_event(bot.events_url, posted)
    emu.wait_for(lambda: len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == 2, 20, "two uploads")
    first, second = emu.uploads(CHANNEL, thread_ts=posted["ts"])

    assert len(emu.api_calls("files.completeUploadExternal")) == 2, "one files_upload_v2 call per 10 files"
    assert (len(first.files), len(second.files)) == (10, 5), "Slack shows at most 10 files in one message"
    assert [f.title.split(".")[0] for f in first.files + second.files] == [str(r) for r in [1, 2, 3, 4, 5] * 3]
    assert all(f"similar to `p{n}.jpg`" in first.initial_comment for n in range(3))
    assert not second.initial_comment, "the ranked list is said once, with the first files"


def test_image_links_for_many_photos_are_split_into_messages_of_at_most_50_blocks(indexed, emu):
    settings = with_settings(indexed, public_base_url="https://findimage.example.org")
    photos = [emu.add_file(jpeg_bytes(seed=330 + n), f"many{n}.jpg", user=ALICE) for n in range(8)]
    with serve_bot(settings) as bot:
        posted = post_photo(emu, *photos)
        emu.send_event(bot.events_url, posted)
        emu.wait_for(lambda: len(emu.messages(CHANNEL, thread_ts=posted["ts"])) == 2, 30, "two messages")

    first, second = emu.messages(CHANNEL, thread_ts=posted["ts"])
    blocks = first.blocks + second.blocks
    # per photo: its heading, its 5 image blocks, its buttons = 7 blocks; 8 photos = 56 blocks
    assert (len(first.blocks), len(second.blocks)) == (50, 6)
    assert [b["type"] for b in blocks] == (["section"] + ["image"] * 5 + ["actions"]) * 8
    assert all(b["image_url"].startswith("https://findimage.example.org/images/") for b in blocks
               if b["type"] == "image")
    headings = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert [f"`many{n}.jpg`" in h for n, h in enumerate(headings)] == [True] * 8, "in the order posted"
    assert emu.uploads() == []


def test_an_edited_message_is_not_answered_again(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=340), "edited.jpg", user=ALICE)
    original = post_photo(emu, photo, text="first words")
    edited = {**original, "text": "better words"}
    # Slack puts the edited message under `message`; the files are also given at the top level here,
    # so that only the subtype can keep the bot from answering.
    change = {"type": "message", "subtype": "message_changed", "hidden": True, "channel": CHANNEL,
              "ts": f"{float(original['ts']) + 5:.6f}", "event_ts": f"{float(original['ts']) + 5:.6f}",
              "message": edited, "previous_message": original, "files": original["files"]}

    delivery = emu.send_event(bot.events_url, change)
    barrier = post_photo(emu, emu.add_file(jpeg_bytes(seed=341), "barrier.jpg", user=ALICE))
    emu.send_event(bot.events_url, barrier)
    emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=15)

    assert delivery.status == 200
    assert emu.uploads(CHANNEL, thread_ts=original["ts"]) == [] and emu.downloads(photo["id"]) == []
    assert len(emu.uploads()) == 1


def test_a_decompression_bomb_gets_one_sentence_and_no_images_and_the_bot_goes_on(bot, emu):
    bomb = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(bomb, "PNG", optimize=True)  # 144 MP of zeros in a few KB
    assert len(bomb.getvalue()) < 300_000
    photo = emu.add_file(bomb.getvalue(), "bomb.png", "image/png", user=ALICE)
    posted = post_photo(emu, photo)

    emu.send_event(bot.events_url, posted)
    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=30)
    after = post_photo(emu, emu.add_file(jpeg_bytes(seed=342), "after.jpg", user=ALICE))
    emu.send_event(bot.events_url, after)
    answer = emu.wait_for_upload(CHANNEL, thread_ts=after["ts"], timeout=15)

    assert reply.text.startswith("I could not read `bomb.png` as a picture (image too large to decode safely "
                                 "(12,000 x 12,000 pixels; at most 40 megapixels))"), reply.text
    assert reply.text.count(". ") <= 2 and "Traceback" not in reply.text
    assert len(emu.messages(CHANNEL, thread_ts=posted["ts"])) == 1, "one sentence, no buttons"
    assert emu.uploads(CHANNEL, thread_ts=posted["ts"]) == [], "no answer images"
    assert len(answer.files) == 5, "the next photo is answered as usual"


def test_a_photo_delivered_again_after_the_memory_expired_is_answered_again(indexed, emu):
    from bot.dedupe import SEEN_TTL_SECONDS, SeenRecently

    clock = FakeClock(1000.0)
    photo = emu.add_file(jpeg_bytes(seed=350), "again.jpg", user=ALICE)
    posted = post_photo(emu, photo)

    def deliver(event_id: str, answers: int) -> None:
        emu.send_event(running.events_url, posted, event_id=event_id)
        barrier = post_photo(emu, emu.add_file(jpeg_bytes(seed=351), f"{event_id}.jpg", user=ALICE))
        emu.send_event(running.events_url, barrier)
        emu.wait_for_upload(CHANNEL, thread_ts=barrier["ts"], timeout=15)  # answered after the delivery
        assert len(emu.uploads(CHANNEL, thread_ts=posted["ts"])) == answers, event_id

    with serve_bot(indexed, seen=SeenRecently(clock=clock)) as running:
        deliver("Ev0FIRST", 1)
        clock.advance(SEEN_TTL_SECONDS - 1)
        deliver("Ev0SECOND", 1)  # a re-delivery (new event id) within the hour: the file is remembered
        clock.advance(1)
        deliver("Ev0THIRD", 2)  # an hour on, it is forgotten: answered again

    assert len(emu.downloads(photo["id"])) == 2

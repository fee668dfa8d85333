"""When something fails, the person who asked is told what went wrong and what to do, and the bot
keeps serving: every story ends with a query that is answered normally."""
from __future__ import annotations

import logging
import re

import pytest
from bot_support import ALICE, CHANNEL, serve_bot
from es_support import es_only
from photos import jpeg_bytes
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from bot.delivery import CommandTarget
from findimage import backends
from findimage.backends import open_store
from findimage.errors import BackendUnavailable, ModelError
from findimage.search import Searcher
from findimage.stores.base import META_IMAGE_MODEL


class FlakyStore:
    """The real embedded store, which a test can take down the way an Elasticsearch cluster goes down."""

    def __init__(self, store):
        self._store = store
        self.failure: Exception | None = None

    def knn(self, *args, **kwargs):
        if self.failure is not None:
            raise self.failure
        return self._store.knn(*args, **kwargs)

    def hybrid(self, *args, **kwargs):  # text queries with words: CLIP and names in one call
        if self.failure is not None:
            raise self.failure
        return self._store.hybrid(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


class FlakyEmbedder:
    """A real embedder that fails its next `failures` calls the way a broken model run fails."""

    def __init__(self, embedder):
        self._embedder = embedder
        self.failures = 0

    def _maybe_fail(self):
        if self.failures > 0:
            self.failures -= 1
            raise ModelError(f"The model {self._embedder.model_id} failed: RuntimeError: out of memory")

    def embed_texts(self, texts):
        self._maybe_fail()
        return self._embedder.embed_texts(texts)

    def embed_images(self, images):
        self._maybe_fail()
        return self._embedder.embed_images(images)

    def __getattr__(self, name):
        return getattr(self._embedder, name)


@pytest.fixture
def flaky(indexed):
    store = FlakyStore(open_store(indexed))
    text, image = FlakyEmbedder(backends.text_embedder(indexed)), FlakyEmbedder(backends.image_embedder(indexed))
    with serve_bot(indexed, Searcher(indexed, store=store, text_embedder=text, image_embedder=image)) as running:
        running.store, running.text_model, running.image_model = store, text, image
        yield running


def command(emu, bot, text="red lights", channel=CHANNEL):
    ack = emu.send_slash_command(bot.events_url, text=text, user_id=ALICE, channel_id=channel)
    assert ack.status == 200
    return ack


def post(emu, bot, *files):
    posted = emu.post_user_message_with_files(CHANNEL, list(files), user=ALICE)
    delivery = emu.send_event(bot.events_url, posted)
    assert delivery.status == 200
    return posted


def thread_reply(emu, posted, containing):
    return emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing=containing, timeout=15)


def still_serving(emu, bot, channel="C0AFTER"):
    command(emu, bot, "still there?", channel)
    return emu.wait_for_upload(channel, timeout=15)


def test_a_store_that_is_down_is_explained_and_answers_resume_when_it_is_back(flaky, emu):
    flaky.store.failure = BackendUnavailable("Elasticsearch at http://es:9200 is unreachable (connection refused)")
    ack = command(emu, flaky)
    private = emu.wait_for_response(ack.response_url, timeout=15)
    posted = post(emu, flaky, emu.add_file(jpeg_bytes(seed=500), "down.jpg", user=ALICE))
    in_thread = thread_reply(emu, posted, "not reachable")

    assert private.ephemeral and private.user_id == ALICE
    assert private.text.startswith("The archive's search store is not reachable right now")
    assert "try again in a few minutes" in in_thread.text and "down.jpg" not in in_thread.text
    assert "9200" not in private.text, "connection details go to the log, not to the channel"
    flaky.store.failure = None
    assert len(still_serving(emu, flaky).files) == 5


def test_a_model_failure_is_explained_and_the_next_query_works(flaky, emu):
    flaky.text_model.failures, flaky.image_model.failures = 1, 1
    ack = command(emu, flaky)
    private = emu.wait_for_response(ack.response_url, timeout=15)
    posted = post(emu, flaky, emu.add_file(jpeg_bytes(seed=501), "model.jpg", user=ALICE))
    in_thread = thread_reply(emu, posted, "model failed")

    assert private.ephemeral and private.text.startswith("The text model failed on this query")
    assert in_thread.text.count("The image model failed on this query") == 1
    assert "out of memory" not in private.text and "bot's log" in private.text
    assert in_thread.thread_ts == posted["ts"]
    assert len(still_serving(emu, flaky).files) == 5


def test_an_unexpected_failure_gets_a_reference_that_is_also_in_the_log(flaky, emu, caplog):
    flaky.store.failure = RuntimeError("disk I/O error")
    with caplog.at_level(logging.ERROR, logger="bot"):
        ack = command(emu, flaky)
        private = emu.wait_for_response(ack.response_url, timeout=15)

    reference = re.search(r"reference `([0-9a-f]{8})`", private.text).group(1)
    assert private.text.startswith("Something went wrong while searching")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and "disk I/O error" in str(logged[0].exc_info[1])
    flaky.store.failure = None
    assert len(still_serving(emu, flaky).files) == 5


def test_an_index_built_with_another_model_tells_the_admin_to_rebuild(flaky, emu):
    flaky.store.set_meta(META_IMAGE_MODEL, "clip-ViT-L-14")
    ack = command(emu, flaky)

    private = emu.wait_for_response(ack.response_url, timeout=15)
    assert "`findimage index --full`" in private.text and emu.uploads() == []


def test_an_image_above_the_size_limit_is_refused_without_downloading_it(bot, emu):
    huge = emu.add_file(name="scan.png", mimetype="image/png", size=60 * 1024 * 1024, user=ALICE)
    small = emu.add_file(jpeg_bytes(seed=502), "small.jpg", user=ALICE)
    posted = post(emu, bot, huge, small)

    answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert "`scan.png` is 62.9 MB; I only search images up to 50.0 MB. Post a smaller copy" in answer.initial_comment
    assert "similar to `small.jpg`" in answer.initial_comment and len(answer.files) == 5
    assert emu.downloads(huge["id"]) == []


def test_a_sign_in_page_instead_of_the_image_says_the_app_lacks_files_read(bot, emu):
    emu.revoke_scope("files:read")
    posted = post(emu, bot, emu.add_file(jpeg_bytes(seed=503), "party.jpg", user=ALICE))
    reply = thread_reply(emu, posted, "sign-in page")
    emu.files_redirect_to_login = True  # files.slack.com may also redirect to the page
    redirected = post(emu, bot, emu.add_file(jpeg_bytes(seed=504), "party2.jpg", user=ALICE))
    reply_after_redirect = thread_reply(emu, redirected, "sign-in page")
    stripped = emu.post_user_message_with_files(CHANNEL, [emu.add_file(jpeg_bytes(seed=505), "p3.jpg")],
                                                file_access="check_file_info")
    emu.send_event(bot.events_url, stripped)
    reply_without_info = thread_reply(emu, stripped, "files:read")

    for message in (reply, reply_after_redirect, reply_without_info):
        assert "the findimage app lacks the `files:read` permission" in message.text
        assert "reinstall" in message.text
    assert [d.authorized for d in emu.downloads()] == [False, False]
    emu.grant_scope("files:read")
    emu.files_redirect_to_login = False
    again = post(emu, bot, emu.add_file(jpeg_bytes(seed=506), "fixed.jpg", user=ALICE))
    assert len(emu.wait_for_upload(CHANNEL, thread_ts=again["ts"], timeout=15).files) == 5


def test_a_refused_download_and_an_unreadable_picture_are_explained(bot, emu):
    gone = emu.add_file(jpeg_bytes(seed=507), "gone.jpg", user=ALICE)
    fake = emu.add_file(b"this is text, not a picture", "fake.png", "image/png", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [gone, fake], user=ALICE)
    posted["files"][0]["url_private_download"] = posted["files"][0]["url_private_download"].replace(
        gone["id"], "F0DELETED")  # deleted between posting and our download

    emu.send_event(bot.events_url, posted)
    reply = thread_reply(emu, posted, "HTTP 404")

    assert "Slack refused the download of `gone.jpg` (HTTP 404)" in reply.text
    assert "I could not read `fake.png` as a picture (not an image (unrecognised format))" in reply.text
    assert emu.uploads() == []
    assert len(still_serving(emu, bot).files) == 5


def test_a_command_in_a_channel_the_bot_is_not_in_asks_to_invite_it(bot, emu):
    emu.inject_error("files.completeUploadExternal", "not_in_channel")
    ack = command(emu, bot, channel="C0STRANGERS")

    private = emu.wait_for_response(ack.response_url, timeout=15)

    assert private.ephemeral and "invite me with `/invite @findimage`" in private.text
    assert len(still_serving(emu, bot).files) == 5


def test_a_rate_limited_upload_waits_for_retry_after_and_then_succeeds(bot, emu):
    emu.rate_limit("files.completeUploadExternal", times=1, retry_after=1)
    command(emu, bot)

    answer = emu.wait_for_upload(CHANNEL, timeout=15)

    calls = emu.api_calls("files.completeUploadExternal")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0, "Retry-After was honoured"
    assert len(answer.files) == 5


def test_a_used_up_response_url_still_reaches_the_requester_privately(emu):
    response_url = emu.new_response_url(CHANNEL, ALICE)
    for n in range(5):  # Slack accepts five posts per response URL
        Respond(response_url=response_url)(text=f"earlier answer {n}")
    target = CommandTarget(WebClient(token=emu.bot_token, base_url=emu.api_url), Respond(response_url=response_url),
                           CHANNEL, ALICE)

    target.tell("The archive is not indexed yet")

    assert emu.responses(response_url)[-1].accepted is False
    (message,) = emu.messages(CHANNEL, ephemeral=True)
    assert (message.user, message.text) == (ALICE, "The archive is not indexed yet")


@es_only
def test_before_the_first_pass_on_elasticsearch_the_bot_says_the_archive_is_not_indexed(bot_settings, emu):
    """A real Elasticsearch without the index: the bot creates nothing (nothing is remembered either) and
    tells the requester why."""
    from es_support import client

    with serve_bot(bot_settings) as running:
        ack = command(emu, running)
        private = emu.wait_for_response(ack.response_url, timeout=15)
        posted = post(emu, running, emu.add_file(jpeg_bytes(seed=501), "early.jpg", user=ALICE))
        in_thread = thread_reply(emu, posted, "not indexed yet")

    assert private.ephemeral and private.text == (
        "The archive is not indexed yet, so there is nothing to search. Whoever runs findimage needs to run "
        "`findimage index` (or wait for the scheduled indexer).")
    assert "findimage index" in in_thread.text
    es = client(bot_settings.elasticsearch_url)
    found = es.indices.resolve_index(name=f"{bot_settings.index_name}*")
    made = [i["name"] for i in found["indices"]]
    assert (made, found["aliases"]) == ([f"{bot_settings.index_name}-seen"], []), \
        "a reader creates no index of images, only the seen keys its replicas share"
    es.indices.delete(index=f"{bot_settings.index_name}-seen")

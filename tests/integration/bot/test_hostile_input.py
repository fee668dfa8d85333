"""Input meant to get archive images where they do not belong: other apps' posts (bot loops), the Home tab
around the allowlist and the team checks, payloads without a team, channels whose sharing is pending."""
from __future__ import annotations

import json

import pytest
from bot_support import ALICE, BOB, CHANNEL, serve_bot, with_settings
from photos import jpeg_bytes
from slack_emulator.fixtures import fixture

from bot.channels import CANNOT_CHECK_SCOPE, CANNOT_CHECK_USER_SCOPE, OTHER_TEAM, SHARED_CHANNEL
from findimage.backends import open_store
from findimage.config import ConfigError, load_settings
from findimage.search import Searcher

GUEST, PARTNER = "U0GUEST", "T0PARTNER"


def answered_in(emu, bot, channel: str = "C0BARRIER", seed: int = 990) -> None:
    """A barrier: a photo posted in `channel` and answered, so whatever was sent before has been handled."""
    photo = emu.add_file(jpeg_bytes(seed=seed), "barrier.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(channel, [photo], user=ALICE)
    emu.send_event(bot.events_url, posted)
    emu.wait_for_upload(channel, thread_ts=posted["ts"], timeout=15)
    emu.wait_for(lambda: bot.work.pending == 0, 15, "every accepted answer to finish")


# ---- bot loops ------------------------------------------------------------------------------------------

def test_another_apps_images_are_not_answered_not_even_looked_up(bot, emu):
    staging = emu.add_file(jpeg_bytes(seed=960), "1-stage.jpg", user="U0OTHERBOT")
    stripped = emu.add_file(jpeg_bytes(seed=961), "2-stage.jpg", user="U0OTHERBOT")
    upload = emu.other_bot_message_event(CHANNEL, files=[staging], text="Archive images most similar to *x*:")
    hidden = emu.other_bot_message_event(CHANNEL, files=[stripped], file_access="check_file_info")
    without_bot_id = dict(emu.other_bot_message_event(CHANNEL, files=[staging]))
    del without_bot_id["bot_id"]  # bot_profile alone still says an app posted it

    for event in (upload, hidden, without_bot_id):
        assert emu.send_event(bot.events_url, event).status == 200
    answered_in(emu, bot)

    assert emu.downloads(staging["id"]) == [] and emu.downloads(stripped["id"]) == []
    assert emu.api_calls("files.info") == []
    assert emu.messages(CHANNEL) == [] and emu.uploads(CHANNEL) == []


def test_an_app_listed_in_FINDIMAGE_ANSWER_BOTS_is_answered(indexed, emu):
    by_bot = emu.add_file(jpeg_bytes(seed=962), "by-bot.jpg", user="U0OTHERBOT")
    by_app = emu.add_file(jpeg_bytes(seed=963), "by-app.jpg", user="U0THIRDBOT")
    with serve_bot(with_settings(indexed, answer_bots=("B0OTHER", "A0THIRD"))) as running:
        listed_bot = emu.other_bot_message_event(CHANNEL, files=[by_bot])
        listed_app = emu.other_bot_message_event(CHANNEL, files=[by_app], bot_id="B0THIRD", app_id="A0THIRD",
                                                 bot_user_id="U0THIRDBOT")
        unlisted = emu.other_bot_message_event(CHANNEL, files=[emu.add_file(jpeg_bytes(seed=964), "n.jpg")],
                                               bot_id="B0FOURTH", app_id="A0FOURTH")
        for event in (listed_bot, listed_app, unlisted):
            emu.send_event(running.events_url, event)
        answers = [emu.wait_for_upload(CHANNEL, thread_ts=e["ts"], timeout=15) for e in (listed_bot, listed_app)]
        answered_in(emu, running)

    assert [len(a.files) for a in answers] == [5, 5]
    assert emu.uploads(CHANNEL, thread_ts=unlisted["ts"]) == []


def test_FINDIMAGE_ANSWER_BOTS_takes_bot_and_app_ids_only(env):
    listed = load_settings({**env, "FINDIMAGE_ANSWER_BOTS": "B0STAGING, A0PROD"}, env_file=None)
    with pytest.raises(ConfigError, match="'findimage-staging' is not a bot or app id"):
        load_settings({**env, "FINDIMAGE_ANSWER_BOTS": "findimage-staging"}, env_file=None)

    assert listed.answer_bots == ("B0STAGING", "A0PROD")
    assert load_settings(env, env_file=None).answer_bots == ()


# ---- the Home tab ---------------------------------------------------------------------------------------

class DescribedStore:
    """The real store, describing itself as an Elasticsearch store does (with its host)."""

    description = "elasticsearch (https://es.internal.example:9200, index images)"

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_the_home_tab_shows_no_path_and_no_host(indexed, emu, test_models):
    searcher = Searcher(indexed, store=DescribedStore(open_store(indexed)))
    with serve_bot(indexed, searcher) as running:
        emu.send_event(running.events_url, emu.app_home_opened(ALICE))
        home = emu.wait_for_view(ALICE, containing="Images indexed", timeout=15)

    text = json.dumps(home.view)
    assert "es.internal.example" not in text and "9200" not in text
    for path in (indexed.data_dir, indexed.archive, test_models["image"], test_models["text"]):
        assert str(path) not in text, path
    assert "findimage.sqlite" not in text and "*Store:* embedded" in text


def test_with_an_allowlist_the_home_tab_offers_no_examples_and_an_example_click_posts_nothing(indexed, emu):
    with serve_bot(with_settings(indexed, channels=("C0ENABLED",))) as running:
        emu.send_event(running.events_url, emu.app_home_opened(ALICE))
        home = emu.wait_for_view(ALICE, containing="Images indexed", timeout=15)
        click = emu.adopt(fixture("interactivity/block_actions_home"))  # a tab published before the allowlist
        assert emu.send_interaction(running.events_url, click).status == 200
        answered_in(emu, running, "C0ENABLED")

    assert "home_example" not in json.dumps(home.blocks)
    dm = emu.dm_channel(ALICE)
    assert emu.uploads(dm) == [] and emu.messages(dm) == []


def test_the_home_tab_of_a_user_of_another_team_shows_only_the_refusal_and_their_click_posts_nothing(bot, emu):
    emu.add_user(GUEST, PARTNER)
    emu.send_event(bot.events_url, emu.app_home_opened(GUEST))
    home = emu.wait_for_view(GUEST, containing=OTHER_TEAM, timeout=15)
    click = emu.adopt(fixture("interactivity/block_actions_home"))
    click["user"].update(id=GUEST, username="guest", name="guest", team_id=PARTNER)
    emu.send_interaction(bot.events_url, click)
    answered_in(emu, bot)

    assert "Images indexed" not in home.visible_text and "home_example" not in json.dumps(home.blocks)
    dm = emu.dm_channel(GUEST)
    assert emu.uploads(dm) == [] and emu.messages(dm) == []


# ---- fail closed ----------------------------------------------------------------------------------------

def test_a_click_whose_team_cannot_be_learned_is_refused(bot, emu):
    emu.send_slash_command(bot.events_url, text="stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=15)
    buttons = emu.wait_for_response(containing="More like", timeout=15)
    click = emu.block_actions_payload(buttons, "more_like_this:1", BOB)
    del click["user"]["team_id"]
    emu.revoke_scope("users:read")

    emu.send_interaction(bot.events_url, click)
    note = emu.wait_for_response(click["response_url"], timeout=15)

    assert note.ephemeral and note.text == CANNOT_CHECK_USER_SCOPE
    assert len(emu.uploads()) == 1


def test_a_photo_in_a_channel_with_a_pending_slack_connect_invitation_is_refused(bot, emu):
    emu.share_channel_externally(CHANNEL, pending=True)
    photo = emu.add_file(jpeg_bytes(seed=965), "pending.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    assert emu.event_callback(posted)["is_ext_shared_channel"] is False, "the envelope does not say it"

    emu.send_event(bot.events_url, posted)
    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert reply.text == SHARED_CHANNEL
    assert emu.downloads(photo["id"]) == [] and emu.uploads() == []


def test_a_photo_where_the_channel_cannot_be_checked_is_refused(bot, emu):
    emu.revoke_scope("channels:read")
    photo = emu.add_file(jpeg_bytes(seed=966), "unchecked.jpg", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)

    emu.send_event(bot.events_url, posted)
    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert reply.text == CANNOT_CHECK_SCOPE
    assert emu.downloads(photo["id"]) == [] and emu.uploads() == []

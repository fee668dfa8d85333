"""`/findimage remember` reads the channel's history back FINDIMAGE_BACKFILL_DAYS: through Slack's rate
limits, resumable, with the images of those messages searchable in the channel when it is done."""
from __future__ import annotations

import time

from bot_support import ALICE, CHANNEL, serve_bot, with_settings

from bot.backfill import CLAIM_SECONDS, DAY, Backfiller
from bot.channels import ChannelPolicy
from bot.remembering import Rememberer
from bot.slack_clients import history_client
from findimage.backends import image_embedder, open_remembered
from findimage.stores.base import ChannelState


def remember(emu, bot, channel=CHANNEL):
    emu.send_slash_command(bot.events_url, text="remember", user_id=ALICE, channel_id=channel)
    emu.wait_for_response(containing="turned on remembering", timeout=15)


def state_of(bot, channel=CHANNEL) -> ChannelState:
    return bot.searcher.remembered.channel(channel)


def wait_done(emu, bot, timeout=60, channel=CHANNEL) -> ChannelState:
    emu.wait_for(lambda: (state_of(bot, channel) or ChannelState("", "", 0, 0)).done, timeout=timeout,
                 what="the backfill done")
    return state_of(bot, channel)


def test_remember_backfills_the_history_through_a_429_and_its_images_are_found_by_name(indexed, emu):
    seeded = emu.seed_history(CHANNEL, 60, files_every=10, start_ts=time.time() - 30 * DAY, step=600)
    too_old = emu.seed_history(CHANNEL, 5, files_every=5, start_ts=time.time() - 120 * DAY)  # before the 90 days
    emu.rate_limit("conversations.history", times=1, retry_after=1)
    settings = with_settings(indexed, history_page=20, history_per_minute=600)
    with serve_bot(settings) as bot:
        remember(emu, bot)
        state = wait_done(emu, bot)
        remembered = {p.file_id for p in bot.searcher.remembered.registry.posted_in(CHANNEL)}
        assert remembered == set(seeded.file_ids) and not remembered & set(too_old.file_ids)
        assert (state.messages, state.images, state.failed) == (60, 6, 0)
        assert len(emu.rate_limited_calls("conversations.history")) == 1
        calls = [c for c in emu.api_calls("conversations.history") if c.status == 200]
        assert len(calls) == 3 and all(c.params["limit"] == "20" for c in calls)

        emu.clear_records()
        emu.send_slash_command(bot.events_url, text="seed 29", user_id=ALICE, channel_id=CHANNEL)
        said = lambda: [u.initial_comment for u in emu.uploads(CHANNEL)] + [r.visible_text for r in emu.responses()]  # noqa: E731
        emu.wait_for(lambda: any("*1.* `" in text and "`seed-29.png` — posted by" in text for text in said()),
                     timeout=20, what="a backfilled image found by its name, first")


def test_a_429_halves_the_pace_so_there_is_no_second_storm(indexed, emu):
    emu.seed_history(CHANNEL, 200, files_every=0, step=60)
    emu.clock_speed = 12  # a minute of Slack's time in 5 real seconds
    emu.limit_rate("conversations.history", 10)
    # 20 requests a (Slack) minute asked for, twice the limit: 4 a real second, which a busy machine still does
    settings = with_settings(indexed, history_page=5, history_per_minute=20 * 12)
    with serve_bot(settings) as bot:
        remember(emu, bot)
        state = wait_done(emu, bot)
    assert state.messages == 200
    limited = emu.rate_limited_calls("conversations.history")
    assert 1 <= len(limited) <= 2, f"{len(limited)} answers 429"


def test_outside_the_marketplace_one_page_of_15_a_minute_still_finishes_and_status_says_how_long(indexed, emu):
    emu.seed_history(CHANNEL, 45, files_every=15, step=60)
    emu.clock_speed = 60
    emu.non_marketplace_app = True
    settings = with_settings(indexed, history_page=15, history_per_minute=60)  # 1 a (Slack) minute
    with serve_bot(settings) as bot:
        remember(emu, bot)
        emu.wait_for(lambda: state_of(bot).pages >= 1, timeout=20, what="the first page")
        emu.clear_records()
        emu.send_slash_command(bot.events_url, text="remember status", user_id=ALICE, channel_id=CHANNEL)
        status = emu.wait_for_response(containing="Reading the history", timeout=15).visible_text
        assert "left (at most 60 requests of 15 messages a minute)" in status
        state = wait_done(emu, bot, timeout=30)
    assert (state.messages, state.images) == (45, 3)
    assert len(emu.rate_limited_calls("conversations.history")) <= 1


def test_a_backfill_stopped_midway_goes_on_from_its_cursor(indexed, emu):
    """Two backfillers one after the other on the same data, as before and after a restart (which finds
    the first one's claim lapsed: its clock is CLAIM_SECONDS ahead rather than waiting them out)."""
    seeded = emu.seed_history(CHANNEL, 50, files_every=5, step=60)
    settings = with_settings(indexed, history_page=10, history_per_minute=6000)
    from slack_sdk import WebClient

    def backfiller(clock=time.time):
        remembered = open_remembered(settings)
        client = history_client(WebClient(token=emu.bot_token, base_url=emu.api_url))
        policy = ChannelPolicy(settings, emu.team_id, remembered)
        rememberer = Rememberer(settings, remembered, image_embedder(settings), policy)
        return Backfiller(settings, remembered, rememberer, client, clock=clock)

    first = backfiller()
    now = time.time()
    first.remembered.registry.save_channel(ChannelState(CHANNEL, ALICE, now, now - 90 * DAY))
    for _ in range(2):
        first.page(CHANNEL)
    saved = first.remembered.channel(CHANNEL)
    assert (saved.pages, saved.messages, saved.done) == (2, 20, False) and saved.cursor
    first.remembered.close()

    second = backfiller(clock=lambda: time.time() + CLAIM_SECONDS + 1)
    assert second.pending() != []  # the first one's claim has lapsed
    while not second.remembered.channel(CHANNEL).done:
        second.page(CHANNEL)
    calls = [c for c in emu.api_calls("conversations.history") if c.status == 200]
    assert calls[2].params.get("cursor") == saved.cursor
    state = second.remembered.channel(CHANNEL)
    assert (state.messages, state.images) == (50, 10)
    assert {p.file_id for p in second.remembered.registry.posted_in(CHANNEL)} == set(seeded.file_ids)
    second.remembered.close()


def test_forget_during_a_backfill_stops_it_and_nothing_is_remembered_after(indexed, emu):
    emu.seed_history(CHANNEL, 400, files_every=4, step=60)
    settings = with_settings(indexed, history_page=10, history_per_minute=60)  # one page a second
    with serve_bot(settings) as bot:
        remember(emu, bot)
        emu.wait_for(lambda: state_of(bot).images >= 1, timeout=30, what="the first images")
        emu.send_slash_command(bot.events_url, text="forget", user_id=ALICE, channel_id=CHANNEL)
        emu.wait_for_response(containing="turned off remembering", timeout=15)
        time.sleep(2.5)  # two more pages' time: the backfill must not write anything now
        assert bot.searcher.remembered.registry.channels() == []
        assert bot.searcher.remembered.registry.posted_in(CHANNEL) == []
        assert bot.searcher.remembered.store.count() == 0


def test_backfilled_images_carry_their_message_date_for_after_and_before(indexed, emu):
    now = time.time()
    old = emu.seed_history(CHANNEL, 1, files_every=1, start_ts=now - 60 * DAY, name="chart old-{i}.png")
    new = emu.seed_history(CHANNEL, 1, files_every=1, start_ts=now - 5 * DAY, name="chart new-{i}.png")
    with serve_bot(with_settings(indexed, history_per_minute=600)) as bot:
        remember(emu, bot)
        wait_done(emu, bot)
        after = time.strftime("%Y-%m-%d", time.localtime(now - 30 * DAY))
        emu.clear_records()
        emu.send_slash_command(bot.events_url, text=f"after:{after} chart", user_id=ALICE, channel_id=CHANNEL)
        said = lambda: " ".join(r.visible_text + repr(r.blocks) for r in emu.responses())  # noqa: E731
        emu.wait_for(lambda: "more_like_this" in said(), timeout=20, what="the answer")
        assert new.file_ids[0] in said() and old.file_ids[0] not in said()


def test_two_replicas_do_not_backfill_one_channel_twice_and_one_takes_over_when_the_other_stops(indexed, emu):
    emu.seed_history(CHANNEL, 30, files_every=0, step=60)
    settings = with_settings(indexed, history_page=10, history_per_minute=6000)
    from slack_sdk import WebClient

    now = [time.time()]

    def replica():
        remembered = open_remembered(settings)
        client = history_client(WebClient(token=emu.bot_token, base_url=emu.api_url))
        policy = ChannelPolicy(settings, emu.team_id, remembered)
        rememberer = Rememberer(settings, remembered, image_embedder(settings), policy)
        return Backfiller(settings, remembered, rememberer, client, clock=lambda: now[0])

    one, two = replica(), replica()
    one.remembered.registry.save_channel(ChannelState(CHANNEL, ALICE, now[0], now[0] - 90 * DAY))
    assert one.step() is True  # one page, and the claim
    assert two.pending() == [] and two.step() is False
    two.page(CHANNEL)
    assert len([c for c in emu.api_calls("conversations.history") if c.status == 200]) == 1
    now[0] += 121  # one stopped: its claim lapses
    while two.step():
        pass
    state = two.remembered.channel(CHANNEL)
    assert state.done and state.messages == 30 and state.worker == two.me
    assert len([c for c in emu.api_calls("conversations.history") if c.status == 200]) == 3
    one.remembered.close()
    two.remembered.close()

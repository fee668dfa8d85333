"""`/findimage remember`, `remember status` and `forget`, and what keeps a remembered channel current:
new posts, deleted or changed files, an archived or deleted channel, the bot removed from it.

Every Slack call and store write here runs after the ack: commands on the work pool, events on this
module's own single worker (a burst of posted photos must not make searches wait), the history on
the backfill thread.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import Settings
from findimage.remembered import Remembered
from findimage.stores.base import ChannelState

from .backfill import DAY, Backfiller, left_seconds
from .channels import NOT_A_MEMBER, ChannelPolicy, Requester, shared_externally
from .remembering import Rememberer, is_person_message

log = logging.getLogger(__name__)
MAX_QUEUED_EVENTS = 1000

TURNED_OFF = ("Remembering posted images is turned off for this workspace (FINDIMAGE_REMEMBER=off), so I only "
              "search the team's archive.")
NOT_IN_DIRECT_MESSAGES = ("I remember images only in channels: a direct message has no channel whose members "
                          "alone could search them.")
NOT_IN_SHARED_CHANNELS = ("This channel is shared with another organisation, so I do not remember its images: "
                          "people outside the team would search what I keep.")
ARCHIVED = "This channel is archived, so there is nothing new to remember."
CANNOT_CHECK = "I could not check this channel just now, so I changed nothing; please try again in a minute."


def day(ts: float) -> str:
    """5 Mar 2024."""
    when = datetime.fromtimestamp(ts)
    return f"{when.day} {when:%b %Y}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return "about a minute"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} minutes"
    if seconds < 36 * 3600:
        return f"about {round(seconds / 3600)} hours"
    return f"about {round(seconds / 86400)} days"


class ChannelMemory:
    def __init__(self, settings: Settings, remembered: Remembered, rememberer: Rememberer, backfiller: Backfiller,
                 policy: ChannelPolicy, bot_user_id: str | None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.bot_user_id = bot_user_id  # member_left_channel names who left: only the bot's leaving matters
        self.remembered = remembered
        self.rememberer = rememberer
        self.backfiller = backfiller
        self.policy = policy
        self.clock = clock
        self.answered_apps = frozenset(settings.answer_bots)
        self._events: queue.Queue = queue.Queue(MAX_QUEUED_EVENTS)
        self._worker: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        """Resume the backfills a restart interrupted. The threads start only when there is work: a bot
        in whose workspace nothing is remembered runs none."""
        try:
            # any unfinished one, claimed by another replica or not: this one takes over if that one stops
            resume = any(not state.done for state in self.remembered.registry.channels())
        except Exception as exc:  # the store away at start: the backfiller finds out for itself
            log.warning("could not look for backfills to resume (%s); looking again in the background", exc)
            resume = True
        if resume:
            self.backfiller.start()

    def _start_worker(self) -> None:
        with self._starting:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="findimage-remember", daemon=True)
                self._worker.start()

    # ---- commands (on the work pool) ----------------------------------------------------------
    def remember(self, client: WebClient, channel_id: str, requester: Requester) -> tuple[str, bool]:
        """(what to say, whether the whole channel should read it)."""
        refusal = self._refusal(client, channel_id, requester)
        if refusal is not None:
            return refusal, False
        if self.remembered.channel(channel_id) is not None:
            return self.status(channel_id), False
        now = self.clock()
        self.remembered.registry.save_channel(ChannelState(channel_id, requester.user_id or "", now,
                                                           now - self.settings.backfill_days * DAY))
        self.backfiller.start()
        self.backfiller.wake()
        log.info("%s turned on remembering in %s", requester.user_id, channel_id)
        return (f"<@{requester.user_id}> turned on remembering for this channel: images posted here from now on, "
                f"and those of the last {self.settings.backfill_days} days, become searchable with `/findimage` "
                "here, and only here. `/findimage remember status` shows how far I am; `/findimage forget` turns "
                "it off and deletes everything I remembered from this channel."), True

    def forget(self, channel_id: str, requester: Requester) -> tuple[str, bool]:
        if self.remembered.channel(channel_id) is None:
            return "I do not remember anything from this channel.", False
        count = self.remembered.forget_channel(channel_id)
        log.info("%s turned off remembering in %s: %d image(s) deleted", requester.user_id, channel_id, count)
        return (f"<@{requester.user_id}> turned off remembering for this channel: the {count:,} image(s) I "
                "remembered from it are deleted, and I remember nothing new here."), True

    def status(self, channel_id: str) -> str:
        state = self.remembered.channel(channel_id)
        if state is None:
            return "I do not remember the images posted in this channel; `/findimage remember` turns it on."
        lines = [f"I remember the images posted in this channel since {day(state.since)} (turned on by "
                 f"<@{state.by}>): {len(self.remembered.registry.posted_in(channel_id)):,} image(s) so far."]
        if state.done:
            lines.append(f"The history back to {day(state.oldest)} is read ({state.messages:,} messages).")
            return "\n".join(lines)
        left = left_seconds(state, self.clock())
        covered = f"back to {day(state.reached)}" if state.reached else "not started"
        pace = self.settings.history_per_minute
        estimate = f", {duration(left)} left" if left is not None else ""
        lines.append(f"Reading the history back to {day(state.oldest)}: {covered}, {state.messages:,} messages "
                     f"read{estimate} (at most {pace:g} requests of {self.settings.history_page} messages a minute).")
        return "\n".join(lines)

    def _refusal(self, client: WebClient, channel_id: str, requester: Requester) -> str | None:
        if self.settings.remember == "off":
            return TURNED_OFF
        if not channel_id or channel_id[0] not in "CG":
            return NOT_IN_DIRECT_MESSAGES
        team = self.policy.team_refusal(client, requester)
        if team is not None:
            return team
        try:
            channel = client.conversations_info(channel=channel_id)["channel"]
        except SlackApiError as exc:
            return NOT_A_MEMBER if exc.response.get("error") == "channel_not_found" else CANNOT_CHECK
        if channel.get("is_im") or channel.get("is_mpim"):
            return NOT_IN_DIRECT_MESSAGES
        if shared_externally(channel):
            return NOT_IN_SHARED_CHANNELS
        if channel.get("is_archived"):
            return ARCHIVED
        if not channel.get("is_member"):  # no events and no history without it
            return NOT_A_MEMBER
        return None

    # ---- events (queued here, done on this module's worker) -----------------------------------
    def notice(self, client: WebClient, event: dict) -> None:
        """A Slack event that may concern a remembered channel; queued, never waited for."""
        self._start_worker()
        try:
            self._events.put_nowait((client, event))
        except queue.Full:
            log.warning("remembering is %d events behind; %s in %s is not handled", MAX_QUEUED_EVENTS,
                        event.get("type"), event.get("channel"))

    def _work(self) -> None:
        while True:
            client, event = self._events.get()
            try:
                self.handle(client, event)
            except Exception:
                log.exception("could not handle %s for remembered channels", event.get("type"))

    def handle(self, client: WebClient, event: dict) -> None:
        kind, subtype = event.get("type"), event.get("subtype")
        if kind == "message" and subtype == "message_deleted":
            previous = event.get("previous_message") or {}
            for file in previous.get("files") or []:
                self.remembered.forget_file(file.get("id", ""), event.get("channel"))
        elif kind == "message" and subtype == "message_changed":
            return  # an edit of the text: the images are the same
        elif kind == "message":
            channel = event.get("channel", "")
            # Slack is asked about the channel only when it is remembered (then it must not be shared)
            if event.get("files") and is_person_message(event, self.answered_apps) and \
                    self.remembered.active(channel) and self.policy.remembered_channel(client, channel) == channel:
                self.rememberer.remember_message(client, channel, event)
        elif kind == "file_deleted":
            self.remembered.forget_file(event.get("file_id", ""))
        elif kind == "file_change":
            self._changed(client, event.get("file_id") or (event.get("file") or {}).get("id", ""))
        elif kind in ("channel_archive", "channel_deleted", "group_archive", "group_deleted", "channel_left",
                      "group_left"):
            self._forget_channel(event.get("channel", ""), kind)
        elif kind == "member_left_channel" and event.get("user") == self.bot_user_id:
            self._forget_channel(event.get("channel", ""), "the bot removed")
        elif kind == "channel_shared":
            self.policy.forget_cached(event.get("channel", ""))
            self._forget_channel(event.get("channel", ""), "shared with another organisation")

    def _forget_channel(self, channel: str, why: str) -> None:
        if channel and self.remembered.channel(channel) is not None:
            count = self.remembered.forget_channel(channel)
            log.info("%s: %s; its %d remembered image(s) deleted", channel, why, count)

    def _changed(self, client: WebClient, file_id: str) -> None:
        """A file changed: remembered again from what it is now, in each channel that remembered it."""
        postings = self.remembered.registry.posted_as(file_id)
        self.remembered.forget_postings(postings)
        for posted in postings:
            message = {"ts": posted.message_ts, "user": posted.poster, "files": [{"id": file_id,
                                                                                  "file_access": "check_file_info"}]}
            self.rememberer.remember_message(client, posted.channel, message)

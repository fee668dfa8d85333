"""`/findimage remember`, `remember status` and `forget`, and what keeps a remembered channel current:
new posts, deleted or changed files, an archived, deleted or shared channel, the bot removed, the app
uninstalled.

Events are kept in the registry's journal before Slack gets its answer (`keep`, run by a listener
middleware: when the store cannot keep a deletion, Slack hears an error and sends it again), and applied
by two workers of this module, one per lane: the lifecycle lane (deletions, sharing, archiving, leaving,
uninstall: cheap deletes, in batches, within seconds) never waits behind the remember lane (new posts and
changed files: download, embed, read text; one message at a time). A full queue cannot drop anything,
and a restart goes on with what was kept. Commands run on the work pool, the history on the backfill
thread; every Slack call and store write after the ack.
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient

from findimage.errors import FindimageError
from findimage.i18n import Language
from findimage.remembered import gone_keys
from findimage.stores.base import LIFECYCLE, REMEMBER, ChannelState, Pending, SeenKeys
from findimage.visibility import Place, Purpose

from .backfill import DAY, Backfiller, left_seconds
from .channels import Lookup, Requester, refusal_text
from .remembering import Rememberer, is_person_message

log = logging.getLogger(__name__)

# Events that delete or hide what was remembered (https://api.slack.com/events).
LIFECYCLE_EVENTS = frozenset({
    "file_deleted", "file_change", "channel_archive", "channel_deleted", "channel_left", "channel_shared",
    "group_archive", "group_deleted", "group_left", "member_left_channel", "app_uninstalled", "tokens_revoked"})
FILE_GONE = frozenset({"file_deleted", "message"})  # a lifecycle "message" is a message_deleted
CHANNEL_GONE = frozenset({"channel_archive", "channel_deleted", "group_archive", "group_deleted", "channel_left",
                          "group_left", "channel_shared", "member_left_channel"})
LIFECYCLE_BATCH = 200  # deletions taken at once: each is a few small deletes
LIFECYCLE_HOLD_SECONDS = 120.0  # another replica takes a batch over if this one stops for that long
REMEMBER_HOLD_SECONDS = 900.0  # a download, an embedding and a text reading (FINDIMAGE_OCR_TIMEOUT_SECONDS)
MAX_REMEMBER_ATTEMPTS = 3  # a message that fails this often (the store away) is given up, logged
IDLE_SECONDS = 10.0  # how often an idle worker looks for entries it was not woken for (another replica's)
BEHIND_LOG_SECONDS = 60.0
# A message event's fields remembering needs: never its text.
MESSAGE_FIELDS = ("type", "subtype", "channel", "ts", "thread_ts", "user", "files", "bot_id", "app_id", "bot_profile")


def day(ts: float, said: Language) -> str:
    """5 Mar 2024 (5. März 2024)."""
    return said.day(datetime.fromtimestamp(ts))


def duration(seconds: float, said: Language) -> str:
    if seconds < 90:
        return said._("about a minute")
    if seconds < 90 * 60:
        return said.ngettext("about {count} minute", "about {count} minutes", round(seconds / 60))
    if seconds < 36 * 3600:
        return said.ngettext("about {count} hour", "about {count} hours", round(seconds / 3600))
    return said.ngettext("about {count} day", "about {count} days", round(seconds / 86400))


class ChannelMemory:
    def __init__(self, rememberer: Rememberer, backfiller: Backfiller, client: WebClient, bot_user_id: str | None,
                 seen: SeenKeys | None = None):
        """Remembering as `rememberer` does it (its settings, its remembered images, its channel policy), the
        history read back by `backfiller`."""
        self.settings = rememberer.settings
        self.bot_user_id = bot_user_id  # member_left_channel names who left: only the bot's leaving matters
        self.remembered = rememberer.remembered
        self.rememberer = rememberer
        self.backfiller = backfiller
        self.policy = rememberer.policy
        self.client = client  # the app's: kept entries are applied after a restart too
        self.seen = seen  # what was answered: Slack's event, channel and file ids, forgotten on uninstall
        self.clock: Callable[[], float] = time.time
        self.answered_apps = frozenset(self.settings.answer_bots)
        self.me = socket.gethostname()  # a restart on the same host takes its own held entries at once
        self._wake = {LIFECYCLE: threading.Event(), REMEMBER: threading.Event()}
        self._stop = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._starting = threading.Lock()
        self._said_behind = 0.0
        self.applied = {LIFECYCLE: 0, REMEMBER: 0}  # since start, for the logs and the benchmark

    def start(self) -> None:
        """Resume the backfills and the journal a restart interrupted. The threads start only when there
        is work: a bot in whose workspace nothing is remembered runs none."""
        try:
            # any unfinished one, claimed by another replica or not: this one takes over if that one stops
            resume = any(not state.done for state in self.remembered.registry.channels())
            waiting = self.remembered.registry.backlog()
        except Exception as exc:  # the store away at start: the workers find out for themselves
            log.warning("could not look for remembering work to resume (%s); looking again in the background", exc)
            resume, waiting = True, {LIFECYCLE: 1, REMEMBER: 1}
        if resume:
            self.backfiller.start()
        for lane in waiting:
            log.info("resuming %d kept %s event(s)", waiting[lane], lane)
            self._start_worker(lane)

    def stop(self) -> None:
        self._stop.set()
        for event in self._wake.values():
            event.set()

    def _start_worker(self, lane: str) -> None:
        with self._starting:
            if lane not in self._workers:
                work = self._lifecycle if lane == LIFECYCLE else self._remembering
                self._workers[lane] = threading.Thread(target=self._run, args=(lane, work), daemon=True,
                                                       name=f"findimage-{lane}")
                self._workers[lane].start()

    # ---- commands (on the work pool) ----------------------------------------------------------
    def remember(self, client: WebClient, channel_id: str, requester: Requester,
                 said: Language) -> tuple[str, bool]:
        """(what to say, in `said`, whether the whole channel should read it)."""
        # Asked afresh: the bot may have been invited a moment ago
        sight = self.policy.sight(client, Purpose.REMEMBER, Place.of(channel_id), requester, Lookup.FRESH)
        if sight.refusal is not None:
            return refusal_text(Purpose.REMEMBER, sight.refusal, said), False
        if self.remembered.channel(channel_id) is not None:
            return self.status(channel_id, said), False
        now = self.clock()
        self.remembered.registry.save_channel(ChannelState(channel_id, requester.user_id or "", now,
                                                           now - self.settings.backfill_days * DAY))
        self.backfiller.start()
        self.backfiller.wake()
        log.info("%s turned on remembering in %s", requester.user_id, channel_id)
        return said.ngettext(
            "<@{user}> turned on remembering for this channel: images posted here from now on, and those of the "
            "last day, become searchable with `/findimage` here, and only here. `/findimage remember status` shows "
            "how far I am; `/findimage forget` turns it off and deletes everything I remembered from this channel.",
            "<@{user}> turned on remembering for this channel: images posted here from now on, and those of the "
            "last {count} days, become searchable with `/findimage` here, and only here. `/findimage remember "
            "status` shows how far I am; `/findimage forget` turns it off and deletes everything I remembered from "
            "this channel.", self.settings.backfill_days, user=requester.user_id), True

    def forget(self, channel_id: str, requester: Requester, said: Language) -> tuple[str, bool]:
        # Never refused (findimage.visibility): not where the allowlist no longer lists the channel either.
        sight = self.policy.sight(self.client, Purpose.FORGET, Place.of(channel_id), requester)
        if sight.channel is None or self.remembered.channel(sight.channel) is None:
            return said._("I do not remember anything from this channel."), False
        count = self.remembered.forget_channel(sight.channel)
        log.info("%s turned off remembering in %s: %d image(s) deleted", requester.user_id, channel_id, count)
        return said.ngettext(
            "<@{user}> turned off remembering for this channel: the {count} image I remembered from it is "
            "deleted, and I remember nothing new here.",
            "<@{user}> turned off remembering for this channel: the {count} images I remembered from it are "
            "deleted, and I remember nothing new here.", count, user=requester.user_id), True

    def status(self, channel_id: str, said: Language) -> str:
        state = self.remembered.channel(channel_id)
        if state is None:
            return said._("I do not remember the images posted in this channel; `/findimage remember` turns it on.")
        lines = [said.ngettext(
            "I remember the images posted in this channel since {day} (turned on by <@{user}>): {count} image so "
            "far.",
            "I remember the images posted in this channel since {day} (turned on by <@{user}>): {count} images so "
            "far.", len(self.remembered.registry.posted_in(channel_id)), day=day(state.since, said), user=state.by)]
        if not self.policy.enabled_in(channel_id):
            lines.append(said._("This channel is no longer on FINDIMAGE_CHANNELS, so I remember nothing new here; "
                                "`/findimage forget` deletes what I kept."))
        waiting = self.remembered.registry.backlog()
        if waiting:
            lines.append(said._("Waiting, in the whole workspace: {messages}, {deletions}.",
                                messages=said.ngettext("{count} message with images to remember",
                                                       "{count} messages with images to remember",
                                                       waiting.get(REMEMBER, 0)),
                                deletions=said.ngettext("{count} deletion to apply", "{count} deletions to apply",
                                                        waiting.get(LIFECYCLE, 0))))
        messages = said.ngettext("{count} message", "{count} messages", state.messages)
        if state.done:
            lines.append(said._("The history back to {day} is read ({messages}).", day=day(state.oldest, said),
                                messages=messages))
            return "\n".join(lines)
        left = left_seconds(state, self.clock())
        covered = said._("back to {day}", day=day(state.reached, said)) if state.reached else said._("not started")
        pace = self.settings.history_per_minute
        read = (said._("{messages} read, {duration} left", messages=messages, duration=duration(left, said))
                if left is not None else said._("{messages} read", messages=messages))
        lines.append(said._("Reading the history back to {day}: {covered}, {read} (at most {pace} requests of "
                            "{page} messages a minute).", day=day(state.oldest, said), covered=covered, read=read,
                            pace=said.number(pace), page=self.settings.history_page))
        return "\n".join(lines)

    # ---- events: kept before the ack, applied by the lane's worker ----------------------------
    def keep(self, event: dict, event_id: str | None) -> bool:
        """Keep the event in the journal if it concerns what is (or should be) remembered; True if kept.
        Raises when a lifecycle event cannot be kept (Slack is then told of an error, and sends it again)."""
        entry = self._entry(event, event_id)
        if entry is None:
            return False
        if event.get("type") == "channel_shared":
            self.policy.mark_shared(event.get("channel", ""))  # hidden from the very next answer
        if entry.lane == REMEMBER:
            try:
                self.remembered.registry.keep([entry])
            except Exception as exc:  # the answer to the photo still comes; only its remembering is lost
                log.warning("could not keep %s's images in %s to remember (%s)", event.get("ts"),
                            event.get("channel"), exc)
                return False
        else:
            self.remembered.registry.keep([entry])
        self._start_worker(entry.lane)
        self._wake[entry.lane].set()
        return True

    def _entry(self, event: dict, event_id: str | None) -> Pending | None:
        kind, subtype = event.get("type"), event.get("subtype")
        if kind == "message" and subtype == "message_deleted":
            previous = event.get("previous_message") or {}
            files = [f.get("id", "") for f in previous.get("files") or [] if f.get("id")]
            if not files:
                return None
            kept = {"type": kind, "subtype": subtype, "channel": event.get("channel"), "files": files,
                    "ts": previous.get("ts") or event.get("deleted_ts")}
            return self._pending(LIFECYCLE, kept, event_id)
        if kind == "message":
            channel = event.get("channel", "")
            # only messages with images for a remembered channel (whether they may be remembered is
            # decided when they are: findimage.visibility)
            if subtype == "message_changed" or not event.get("files") or \
                    not is_person_message(event, self.answered_apps) or not self.remembered.active(channel):
                return None
            return self._pending(REMEMBER, {k: event[k] for k in MESSAGE_FIELDS if k in event}, event_id)
        if kind not in LIFECYCLE_EVENTS:
            return None
        if kind == "member_left_channel" and event.get("user") != self.bot_user_id:
            return None
        if kind == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return None  # only the bot's token matters: without it nothing remembered can be kept current
        kept = {k: event[k] for k in ("type", "channel", "file_id", "user", "tokens") if k in event}
        if kind == "file_change":
            kept["file_id"] = event.get("file_id") or (event.get("file") or {}).get("id", "")
        return self._pending(LIFECYCLE, kept, event_id)

    def _pending(self, lane: str, event: dict, event_id: str | None) -> Pending:
        # Slack's event_id makes its re-deliveries one entry; without one (a test's bare event), its content.
        key = event_id or hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:32]
        return Pending(key, lane, event, self.clock())

    def _run(self, lane: str, work: Callable[[], int]) -> None:
        while not self._stop.is_set():
            self._wake[lane].clear()
            try:
                done = work()
            except FindimageError as exc:  # the store away: one line, tried again, never the thread's end
                log.warning("could not apply the kept %s events (%s); trying again in %.0f s", lane, exc,
                            IDLE_SECONDS)
                done = 0
            except Exception:  # a bug: its traceback, and tried again
                log.exception("could not apply the kept %s events; trying again in %.0f s", lane, IDLE_SECONDS)
                done = 0
            if not done:
                self._wake[lane].wait(IDLE_SECONDS)

    def _lifecycle(self) -> int:
        """One batch of deletions; how many were applied. Each stays kept until it is applied."""
        registry = self.remembered.registry
        entries = registry.take(LIFECYCLE, LIFECYCLE_BATCH, self.me, self.clock(), LIFECYCLE_HOLD_SECONDS)
        applied = []
        # A batch's file and message deletions in one store deletion: erasing what was deleted from the
        # store's files (findimage/stores/embedded/erasing.py) costs about the same for one image or many.
        files = [e for e in entries if e.event.get("type") in FILE_GONE]
        try:
            self.forget_files([e.event for e in files])
            applied += [e.id for e in files]
        except Exception:
            log.exception("could not apply %d file deletion(s) (kept, tried again)", len(files))
        for entry in entries:
            if entry.event.get("type") in FILE_GONE:
                continue
            try:
                self.apply(entry.event)
                applied.append(entry.id)
            except Exception:
                log.exception("could not apply %s (kept, tried again)", entry.event.get("type"))
        registry.settle(applied)
        self.applied[LIFECYCLE] += len(applied)
        if applied:
            log.info("applied %d deletion event(s) to what is remembered", len(applied))
        return len(applied)

    def _remembering(self) -> int:
        registry = self.remembered.registry
        entries = registry.take(REMEMBER, 1, self.me, self.clock(), REMEMBER_HOLD_SECONDS)
        for entry in entries:
            event = entry.event
            try:
                self.rememberer.remember_message(self.client, event.get("channel", ""), event)
            except Exception as exc:
                if entry.attempts < MAX_REMEMBER_ATTEMPTS:
                    log.warning("could not remember the images of %s in %s (%s); trying again", event.get("ts"),
                                event.get("channel"), exc)
                    return 0  # the worker waits a while before the next take
                log.error("could not remember the images of %s in %s after %d attempts (%s); given up",
                          event.get("ts"), event.get("channel"), entry.attempts, exc)
            registry.settle([entry.id])
            self.applied[REMEMBER] += 1
        self._say_behind()
        return len(entries)

    def _say_behind(self) -> None:
        now = self.clock()
        if now - self._said_behind < BEHIND_LOG_SECONDS:
            return
        self._said_behind = now
        waiting = self.remembered.registry.backlog()
        if waiting.get(REMEMBER):
            log.info("remembering is %d message(s) with images behind", waiting[REMEMBER])

    def forget_files(self, events: list[dict]) -> None:
        """Deleted files (`file_deleted`: everywhere) and deleted messages (`message_deleted`: their files,
        in their channel), all in one deletion; recorded first, so a posting of them still waiting is not
        remembered later."""
        keys, postings = [], []
        for event in events:
            if event.get("type") == "message":
                channel, ts = event.get("channel", ""), str(event.get("ts") or "")
                keys += [gone_keys(channel, file_id, ts)[1] for file_id in event.get("files") or []]
                postings += [p for file_id in event.get("files") or []
                             for p in self.remembered.registry.posted_as(file_id) if p.channel == channel]
            else:
                keys.append(event.get("file_id", ""))
                postings += self.remembered.registry.posted_as(event.get("file_id", ""))
        if keys:
            self.remembered.forget_deleted(keys)
        self.remembered.forget_postings(postings)

    def apply(self, event: dict) -> None:
        """One lifecycle event: what it deletes, deleted (idempotent: applying it twice changes nothing)."""
        kind = event.get("type")
        if kind in FILE_GONE:
            self.forget_files([event])
        elif kind == "file_change":
            self._changed(event.get("file_id", ""))
        elif kind in CHANNEL_GONE:
            why = "the bot removed" if kind == "member_left_channel" else kind
            self._forget_channel(event.get("channel", ""), str(why))
        elif kind in ("app_uninstalled", "tokens_revoked"):
            channels, images = self.remembered.forget_everything()
            if self.seen is not None:
                self.seen.forget_all()
            log.warning("%s: everything findimage kept from Slack is deleted: %d remembered channel(s), %d "
                        "image(s) with their words and text, the kept events and the answered keys", kind,
                        channels, images)

    def _forget_channel(self, channel: str, why: str) -> None:
        if channel and self.remembered.channel(channel) is not None:
            count = self.remembered.forget_channel(channel)
            log.info("%s: %s; its %d remembered image(s) deleted", channel, why, count)

    def _changed(self, file_id: str) -> None:
        """A file changed: forgotten now, remembered again from what it is now (on the remember lane), in
        each channel that remembered it."""
        postings = self.remembered.registry.posted_as(file_id)
        self.remembered.forget_postings(postings)
        again = [Pending(f"change:{file_id}:{p.channel}:{self.clock()}", REMEMBER,
                         {"type": "message", "channel": p.channel, "ts": p.message_ts, "user": p.poster,
                          "files": [{"id": file_id, "file_access": "check_file_info"}]}, self.clock())
                 for p in postings]
        if again:
            self.remembered.registry.keep(again)
            self._start_worker(REMEMBER)
            self._wake[REMEMBER].set()

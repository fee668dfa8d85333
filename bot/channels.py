"""The facts of who may see what, learned from Slack, and the refusals' sentences: the decision itself is
findimage.visibility.decide. The archive is shown not to other organisations, and only in enabled channels.

A Slack Connect channel (shared with another organisation, or about to be) shows every message to people
outside the team; answering there would hand the archive to them. So would answering users of another
team. Both are refused with one sentence, unless FINDIMAGE_ALLOW_SHARED_CHANNELS=true. FINDIMAGE_CHANNELS,
when set, limits the bot to those channel ids.

Every answer's channel is looked up with conversations.info (cached for a few minutes): an event's
`is_ext_shared_channel` says nothing of a pending invitation, and commands and clicks say nothing at all.
Who asked is read from the payload where it names a workspace (a slash command's `team_id`, a click's
`user.team_id`, an event's `user_team` when it is a team id); file_share events, message shortcuts and the
Home tab carry no team, and in Slack Connect `user_team` may be an Enterprise Grid id, so there the user's
team is learned with users.info (cached, bounded). When a look-up fails the bot does not guess: it refuses.

The same users.info answer (asked with `include_locale`) gives the person's Slack locale, from which
findimage.i18n chooses the language of everything the bot says to them: one look-up per person for both,
cached with the same bounds, and none for the language where FINDIMAGE_LANGUAGE names one.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import SlackSettings
from findimage.i18n import N_, Language, choose, language
from findimage.remembered import Remembered
from findimage.visibility import Conversation, Place, Purpose, Rules, Sight, Why, decide

log = logging.getLogger(__name__)
V = TypeVar("V")

CHANNEL_INFO_TTL_SECONDS = 300.0
USER_INFO_TTL_SECONDS = 600.0
MAX_CACHED = 10_000

NOT_ENABLED = N_("I am not enabled in this channel, so I show no archive images here; ask whoever runs findimage "
                 "to add it to FINDIMAGE_CHANNELS if you need me here.")
SHARED_CHANNEL = N_("This channel is shared with another organisation, so I do not show images from the team's "
                    "archive here.")
OTHER_TEAM = N_("I only show images from the team's archive to members of its own workspace.")
NOT_A_MEMBER = N_("I cannot see this conversation, so I show no archive images here; invite me to this channel with "
                  "`/invite @findimage` and try again.")
CANNOT_CHECK_SCOPE = N_("I could not check whether this channel is shared with another organisation, so I show no "
                        "archive images here; ask whoever runs findimage to add the `channels:read`, `groups:read`, "
                        "`im:read` and `mpim:read` scopes to the app and reinstall it.")
CANNOT_CHECK = N_("I could not check whether this channel is shared with another organisation, so I show no "
                  "archive images here; please try again in a minute.")
CANNOT_CHECK_USER_SCOPE = N_("I could not check which workspace you belong to, so I show you no archive images; ask "
                             "whoever runs findimage to add the `users:read` scope to the app and reinstall it.")
CANNOT_CHECK_USER = N_("I could not check which workspace you belong to, so I show you no archive images; please "
                       "try again in a minute.")
# Turning remembering on
TURNED_OFF = N_("Remembering posted images is turned off for this workspace (FINDIMAGE_REMEMBER=off), so I only "
                "search the team's archive.")
NOT_IN_DIRECT_MESSAGES = N_("I remember images only in channels: a direct message has no channel whose members "
                            "alone could search them.")
NOT_IN_SHARED_CHANNELS = N_("This channel is shared with another organisation, so I do not remember its images: "
                            "people outside the team would search what I keep.")
NOT_ENABLED_TO_REMEMBER = N_("I am not enabled in this channel, so I do not remember its images; ask whoever runs "
                             "findimage to add it to FINDIMAGE_CHANNELS if you need me here.")
ARCHIVED = N_("This channel is archived, so there is nothing new to remember.")
CANNOT_CHECK_NOW = N_("I could not check this channel just now, so I changed nothing; please try again in a minute.")


def workspace_id(team: object) -> str | None:
    """`team` if it names a workspace (T...); Enterprise Grid org ids (E...) and anything else do not."""
    return team if isinstance(team, str) and team.startswith("T") else None


@dataclass(frozen=True)
class Requester:
    """Who asked: their user id and, when the payload names it, their workspace."""

    user_id: str | None
    team_id: str | None = None

    @classmethod
    def of_command(cls, command: dict) -> Requester:
        return cls(command.get("user_id"), workspace_id(command.get("team_id")))

    @classmethod
    def of_interaction(cls, body: dict) -> Requester:
        """A click's user carries team_id; a message shortcut's user ({id, name}) does not."""
        user = body.get("user") or {}
        return cls(user.get("id"), workspace_id(user.get("team_id")))

    @classmethod
    def of_event(cls, event: dict) -> Requester:
        """`user_team` where Slack sends it (Slack Connect); not `team`, which is not the author's in every event."""
        return cls(event.get("user"), workspace_id(event.get("user_team")))


def shared_externally(channel: dict) -> bool:
    """https://api.slack.com/types/conversation: is_ext_shared (shared with another organisation),
    is_pending_ext_shared (awaiting approval), and is_shared unless the sharing is within the org."""
    return bool(channel.get("is_ext_shared") or channel.get("is_pending_ext_shared")
                or channel.get("pending_shared") or channel.get("pending_connected_team_ids")
                or (channel.get("is_shared") and not channel.get("is_org_shared")))


class BoundedCache(Generic[V]):
    """Answers of Slack look-ups for a while, at most `max_entries` of them (oldest dropped first)."""

    def __init__(self, ttl_seconds: float, max_entries: int = MAX_CACHED,
                 clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() >= entry[0]:
                return None
            return entry[1]

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (self._clock() + self._ttl, value)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class SlackUser:
    """What users.info says of a person that the bot uses: their workspace (as `_workspace_of` reads it)
    and their Slack locale (`de-DE`; None where Slack sends none)."""

    team: str
    locale: str | None = None


UserLookup = tuple[SlackUser | None, Why | None]


class Lookup(Enum):
    """How `ChannelPolicy.sight` learns what Slack says of the conversation."""

    CACHED = "cached"  # conversations.info, cached a few minutes
    FRESH = "fresh"  # asked again, whatever is cached (turning remembering on: the bot may have just been invited)
    SHARED = "shared"  # the event's envelope says it is shared with another organisation: nothing is asked


class ChannelPolicy:
    """The facts findimage.visibility.decide asks for, learned from the request and from Slack (cached),
    and its refusals said in one sentence each. Every path asks it for an `Asking`: `quick` at the ack,
    `sight` after it."""

    def __init__(self, settings: SlackSettings, team_id: str | None, remembered: Remembered | None = None):
        self.rules = Rules(allow_shared=settings.allow_shared_channels, remember=settings.remember != "off")
        self.channels = frozenset(settings.channels or ())
        self.team_id = team_id
        self.remembered = remembered
        self._conversations: BoundedCache[Conversation] = BoundedCache(CHANNEL_INFO_TTL_SECONDS)  # by channel id
        self.language_setting = settings.language
        self._users: BoundedCache[SlackUser] = BoundedCache(USER_INFO_TTL_SECONDS)  # what users.info said, by user id

    def asking(self, place: Place, requester: Requester | None, lookup: Lookup = Lookup.CACHED) -> Asking:
        """One request's decision (`requester` None: an event no person asked for, such as a post to
        remember), its facts learned once and carried from the ack to the answer; what Slack says of the
        conversation learned as `lookup` says."""
        return Asking(self, place, requester, lookup)

    def sight(self, client: WebClient, purpose: Purpose, place: Place, requester: Requester | None,
              lookup: Lookup = Lookup.CACHED) -> Sight:
        """The decision for a request asked once, after the ack."""
        return self.asking(place, requester, lookup).sight(client, purpose)

    def enabled_in(self, channel_id: str | None) -> bool:
        return not self.channels or channel_id in self.channels

    def mark_shared(self, channel_id: str) -> None:
        """A channel_shared event: shared from now on for every look-up of this process, before the
        event's own work (forgetting the channel) is done."""
        self._conversations.put(channel_id, Conversation(shared=True))

    def forget_cached(self, channel_id: str) -> None:
        self._conversations.drop(channel_id)

    def team_problem(self, client: WebClient, requester: Requester, user: Callable[[], UserLookup]) -> Why | None:
        """`user`: what users.info says of the requester (asked only where the payload names no team)."""
        if requester.team_id:
            return self.stranger(requester.team_id)
        if not requester.user_id:
            log.warning("a request without a user; not answering it")
            return Why.CANNOT_CHECK_USER
        known, problem = user()
        return problem or self.stranger(known.team if known is not None else None)

    def stranger(self, team: str | None) -> Why | None:
        """OTHER_TEAM unless `team` is this workspace."""
        return None if self.team_id is not None and team == self.team_id else Why.OTHER_TEAM

    def language_of(self, client: WebClient, user_id: str | None,
                    user: Callable[[], UserLookup] | None = None) -> Language:
        """The language `user_id` is answered in (findimage.i18n.choose): FINDIMAGE_LANGUAGE's, or their Slack
        locale's (users.info, cached; English where it cannot be learned). `user`: the request's own look-up."""
        if self.language_setting != "auto" or not user_id:
            return language(choose(self.language_setting, None))
        known, _ = user() if user is not None else self.user(client, user_id)
        return language(choose(self.language_setting, known.locale if known is not None else None))

    def user(self, client: WebClient, user_id: str) -> UserLookup:
        """(what users.info says of the user, None), or (None, why it could not be learned); cached."""
        known = self._users.get(user_id)
        if known is not None:
            return known, None
        try:
            user = client.users_info(user=user_id, include_locale=True)["user"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("users.info for %s failed (%s)", user_id, error)
            return None, Why.CANNOT_CHECK_USER_SCOPE if error == "missing_scope" else Why.CANNOT_CHECK_USER
        except Exception as exc:
            log.warning("users.info for %s failed (%s)", user_id, type(exc).__name__)
            return None, Why.CANNOT_CHECK_USER
        locale = user.get("locale")
        known = SlackUser(self._workspace_of(user), locale if isinstance(locale, str) else None)
        self._users.put(user_id, known)
        return known, None

    def _workspace_of(self, user: dict) -> str:
        """This workspace for its members (in an Enterprise Grid org, a member of several workspaces lists
        them in `teams`); the user's own team otherwise. Strangers (users of a connected organisation) are
        never this workspace's."""
        if user.get("is_stranger"):
            return f"stranger:{user.get('team_id')}"
        teams = list(user.get("teams") or []) + list((user.get("enterprise_user") or {}).get("teams") or [])
        if self.team_id is not None and self.team_id in teams:
            return self.team_id
        return str(user.get("team_id") or "")

    def conversation(self, client: WebClient, channel_id: str | None, fresh: bool = False) -> Conversation:
        """What conversations.info says (cached a few minutes; a failure is not cached)."""
        if not channel_id:
            return Conversation(problem=Why.CANNOT_CHECK)
        known = None if fresh else self._conversations.get(channel_id)
        if known is not None:
            return known
        try:
            channel = client.conversations_info(channel=channel_id)["channel"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("conversations.info for %s failed (%s); not answering there", channel_id, error)
            if error == "channel_not_found":  # a private channel or a DM the bot is not in: final
                return Conversation(problem=Why.NOT_A_MEMBER)
            return Conversation(problem=Why.CANNOT_CHECK_SCOPE if error == "missing_scope" else Why.CANNOT_CHECK)
        except Exception as exc:
            log.warning("conversations.info for %s failed (%s); not answering there", channel_id, type(exc).__name__)
            return Conversation(problem=Why.CANNOT_CHECK)
        known = Conversation(shared=shared_externally(channel), archived=bool(channel.get("is_archived")),
                             member=bool(channel.get("is_member", True)))
        self._conversations.put(channel_id, known)
        return known


class Asking:
    """One request: where and by whom it was made, and the facts findimage.visibility.decide asks for,
    each learned once. At the ack `quick` decides from the request alone (the allowlist, a team the payload
    names); after it, `sight` decides with what Slack says, taking those answers as the ack found them."""

    def __init__(self, policy: ChannelPolicy, place: Place, requester: Requester | None, lookup: Lookup):
        self.policy, self.place, self.requester, self.lookup = policy, place, requester, lookup
        self._enabled: bool | None = None
        self._team: tuple[Why | None] | None = None  # (the answer,) once it is known
        self._user: UserLookup | None = None
        self._language: Language | None = None
        self._conversation: Conversation | None = None
        self._remembered: bool | None = None

    def quick(self) -> Sight:
        """The decision from the request alone, at the ack. Not a permission: `sight` decides after the ack,
        with what Slack says."""
        return decide(Purpose.ANSWER, self.place, _PayloadFacts(self), self.policy.rules)

    def sight(self, client: WebClient, purpose: Purpose = Purpose.ANSWER) -> Sight:
        return decide(purpose, self.place, _SlackFacts(self, client), self.policy.rules)

    def enabled(self) -> bool:
        if self._enabled is None:
            self._enabled = self.policy.enabled_in(self.place.channel_id)
        return self._enabled

    def named_team(self) -> Why | None:
        """The requester's team as the payload names it, or None where it names none (not known yet)."""
        if self._team is None and self.requester is not None and self.requester.team_id:
            self._team = (self.policy.stranger(self.requester.team_id),)
        return self._team[0] if self._team is not None else None

    def team(self, client: WebClient) -> Why | None:
        """The requester's team as the payload names it, else as Slack says (users.info, cached)."""
        if self.requester is None:
            return None
        if self._team is None:
            self._team = (self.policy.team_problem(client, self.requester, lambda: self.user(client)),)
        return self._team[0]

    def user(self, client: WebClient) -> UserLookup:
        """What users.info says of the requester, asked (or read from the cache) once per request; a failure
        is asked again where it is needed again (the ack's look-up has a short timeout, the team's has not)."""
        if self._user is not None:
            return self._user
        user_id = self.requester.user_id if self.requester is not None else None
        found = self.policy.user(client, user_id) if user_id else (None, Why.CANNOT_CHECK_USER)
        if found[0] is not None:
            self._user = found
        return found

    def language(self, client: WebClient) -> Language:
        """The language of everything said for this request, even to the whole channel: the requester's."""
        if self._language is None:
            user_id = self.requester.user_id if self.requester is not None else None
            self._language = self.policy.language_of(client, user_id, lambda: self.user(client))
        return self._language

    def conversation(self, client: WebClient) -> Conversation:
        if self._conversation is None:
            self._conversation = Conversation(shared=True) if self.lookup is Lookup.SHARED else \
                self.policy.conversation(client, self.place.channel_id, self.lookup is Lookup.FRESH)
        return self._conversation

    def remembered(self) -> bool:
        if self._remembered is None:
            remembered = self.policy.remembered
            self._remembered = remembered is not None and remembered.active(self.place.channel_id)
        return self._remembered


class _SlackFacts:
    """A request's facts after the ack: asked of Slack (or the cache) only when the decision needs them."""

    def __init__(self, asking: Asking, client: WebClient):
        self.asking, self.client = asking, client

    def enabled(self) -> bool:
        return self.asking.enabled()

    def team(self) -> Why | None:
        return self.asking.team(self.client)

    def conversation(self) -> Conversation:
        return self.asking.conversation(self.client)

    def remembered(self) -> bool:
        return self.asking.remembered()


class _PayloadFacts:
    """Only what the request itself says: no Slack call, no store read."""

    def __init__(self, asking: Asking):
        self.asking = asking

    def enabled(self) -> bool:
        return self.asking.enabled()

    def team(self) -> Why | None:
        return self.asking.named_team()

    def conversation(self) -> Conversation:
        return Conversation()  # unknown until Slack is asked after the ack

    def remembered(self) -> bool:
        return False


ANSWER_SENTENCES = {
    Why.NOT_ENABLED: NOT_ENABLED, Why.OTHER_TEAM: OTHER_TEAM, Why.SHARED: SHARED_CHANNEL,
    Why.NOT_A_MEMBER: NOT_A_MEMBER, Why.CANNOT_CHECK: CANNOT_CHECK, Why.CANNOT_CHECK_SCOPE: CANNOT_CHECK_SCOPE,
    Why.CANNOT_CHECK_USER: CANNOT_CHECK_USER, Why.CANNOT_CHECK_USER_SCOPE: CANNOT_CHECK_USER_SCOPE}
REMEMBER_SENTENCES = {
    **ANSWER_SENTENCES, Why.REMEMBER_OFF: TURNED_OFF, Why.NOT_A_CHANNEL: NOT_IN_DIRECT_MESSAGES,
    Why.SHARED: NOT_IN_SHARED_CHANNELS, Why.ARCHIVED: ARCHIVED, Why.CANNOT_CHECK: CANNOT_CHECK_NOW,
    Why.CANNOT_CHECK_SCOPE: CANNOT_CHECK_NOW, Why.NOT_ENABLED: NOT_ENABLED_TO_REMEMBER}


def refusal_text(purpose: Purpose, why: Why, said: Language) -> str:
    """A refusal in one sentence, as the request's purpose puts it, in the asker's language."""
    return said._((REMEMBER_SENTENCES if purpose is Purpose.REMEMBER else ANSWER_SENTENCES)[why])


def is_from_another_app(event: dict, answered: frozenset) -> bool:
    """Posted by a bot or app (bot_id, bot_profile or app_id) not in FINDIMAGE_ANSWER_BOTS: answering one
    invites its answer in turn, and two findimage installations in one channel would answer each other."""
    profile = event.get("bot_profile") or {}
    ids = {event.get("bot_id"), event.get("app_id"), profile.get("id"), profile.get("app_id")} - {None}
    return bool(ids or event.get("bot_profile")) and not ids & answered

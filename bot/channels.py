"""Where the bot may show archive images: not to other organisations, and only in enabled channels.

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
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import Settings

log = logging.getLogger(__name__)

CHANNEL_INFO_TTL_SECONDS = 300.0
USER_INFO_TTL_SECONDS = 600.0
MAX_CACHED = 10_000

NOT_ENABLED = ("I am not enabled in this channel, so I show no archive images here; ask whoever runs findimage "
               "to add it to FINDIMAGE_CHANNELS if you need me here.")
SHARED_CHANNEL = ("This channel is shared with another organisation, so I do not show images from the team's "
                  "archive here.")
OTHER_TEAM = "I only show images from the team's archive to members of its own workspace."
NOT_A_MEMBER = ("I cannot see this conversation, so I show no archive images here; invite me to this channel with "
                "`/invite @findimage` and try again.")
CANNOT_CHECK_SCOPE = ("I could not check whether this channel is shared with another organisation, so I show no "
                      "archive images here; ask whoever runs findimage to add the `channels:read`, `groups:read`, "
                      "`im:read` and `mpim:read` scopes to the app and reinstall it.")
CANNOT_CHECK = ("I could not check whether this channel is shared with another organisation, so I show no "
                "archive images here; please try again in a minute.")
CANNOT_CHECK_USER_SCOPE = ("I could not check which workspace you belong to, so I show you no archive images; ask "
                           "whoever runs findimage to add the `users:read` scope to the app and reinstall it.")
CANNOT_CHECK_USER = ("I could not check which workspace you belong to, so I show you no archive images; please "
                     "try again in a minute.")


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


class BoundedCache:
    """Answers of Slack look-ups for a while, at most `max_entries` of them (oldest dropped first)."""

    def __init__(self, ttl_seconds: float, max_entries: int = MAX_CACHED, clock=time.monotonic):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() >= entry[0]:
                return None
            return entry[1]

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: str, value) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (self._clock() + self._ttl, value)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class ChannelPolicy:
    def __init__(self, settings: Settings, team_id: str | None, ttl_seconds: float = CHANNEL_INFO_TTL_SECONDS,
                 clock=time.monotonic, user_ttl_seconds: float = USER_INFO_TTL_SECONDS, max_cached: int = MAX_CACHED):
        self.allow_shared = settings.allow_shared_channels
        self.channels = frozenset(settings.channels or ())
        self.team_id = team_id
        self._shared = BoundedCache(ttl_seconds, max_cached, clock)  # channel id -> shared with another org
        self._teams = BoundedCache(user_ttl_seconds, max_cached, clock)  # user id -> their workspace

    def enabled_in(self, channel_id: str | None) -> bool:
        return not self.channels or channel_id in self.channels

    def quick_refusal(self, channel_id: str | None, requester: Requester) -> str | None:
        """What can be decided from the request alone: the allowlist and a team the payload names."""
        if not self.enabled_in(channel_id):
            return NOT_ENABLED
        if not self.allow_shared and requester.team_id and requester.team_id != self.team_id:
            return OTHER_TEAM
        return None

    def refusal(self, client: WebClient, channel_id: str | None, requester: Requester,
                shared_hint: bool = False) -> str | None:
        """Everything: the allowlist, the requester's team, and whether the channel is shared.

        `shared_hint`: the event's envelope already says the channel is shared with another organisation."""
        if not self.enabled_in(channel_id):
            return NOT_ENABLED
        return self.people_refusal(client, channel_id, requester, shared_hint)

    def people_refusal(self, client: WebClient, channel_id: str | None, requester: Requester,
                       shared_hint: bool = False) -> str | None:
        """Whether someone outside the team would see the images: the requester, or the channel's other members."""
        if self.allow_shared:
            return None
        return self.team_refusal(client, requester) or self.channel_refusal(client, channel_id, shared_hint)

    def team_refusal(self, client: WebClient, requester: Requester) -> str | None:
        if self.allow_shared:
            return None
        team, problem = (requester.team_id, None) if requester.team_id else self._team_of(client, requester.user_id)
        if problem is not None:
            return problem
        return None if self.team_id is not None and team == self.team_id else OTHER_TEAM

    def _team_of(self, client: WebClient, user_id: str | None) -> tuple[str | None, str | None]:
        """(the user's workspace, None), or (None, why it could not be learned)."""
        if not user_id:
            log.warning("a request without a user; not answering it")
            return None, CANNOT_CHECK_USER
        known = self._teams.get(user_id)
        if known is not None:
            return known, None
        try:
            user = client.users_info(user=user_id)["user"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("users.info for %s failed (%s); not answering them", user_id, error)
            return None, CANNOT_CHECK_USER_SCOPE if error == "missing_scope" else CANNOT_CHECK_USER
        except Exception as exc:
            log.warning("users.info for %s failed (%s); not answering them", user_id, type(exc).__name__)
            return None, CANNOT_CHECK_USER
        team = self._workspace_of(user)
        self._teams.put(user_id, team)
        return team, None

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

    def channel_refusal(self, client: WebClient, channel_id: str | None, shared_hint: bool = False) -> str | None:
        """Whether the channel is shared with another organisation, from conversations.info (cached)."""
        if self.allow_shared:
            return None
        if shared_hint:
            return SHARED_CHANNEL
        if not channel_id:
            return CANNOT_CHECK
        shared, problem = self._shared_state(client, channel_id)
        return problem or (SHARED_CHANNEL if shared else None)

    def remembered_channel(self, client: WebClient, channel_id: str | None) -> str | None:
        """`channel_id` when a query there may see the images remembered from it: a channel (not a direct
        message) not shared with another organisation, whatever FINDIMAGE_ALLOW_SHARED_CHANNELS says (people
        outside the team may see the archive then, never what was posted before they joined). None when
        that cannot be checked."""
        if not channel_id or channel_id[0] not in "CG":  # D...: direct messages are never remembered
            return None
        shared, problem = self._shared_state(client, channel_id)
        return channel_id if problem is None and not shared else None

    def _shared_state(self, client: WebClient, channel_id: str) -> tuple[bool, str | None]:
        """(shared with another organisation, None), or (True, why it could not be checked)."""
        shared = self._shared.get(channel_id)
        if shared is not None:
            return bool(shared), None
        try:
            channel = client.conversations_info(channel=channel_id)["channel"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("conversations.info for %s failed (%s); not answering there", channel_id, error)
            if error == "channel_not_found":  # a private channel or a DM the bot is not in: final
                return True, NOT_A_MEMBER
            return True, CANNOT_CHECK_SCOPE if error == "missing_scope" else CANNOT_CHECK
        except Exception as exc:
            log.warning("conversations.info for %s failed (%s); not answering there", channel_id, type(exc).__name__)
            return True, CANNOT_CHECK
        shared = shared_externally(channel)
        self._shared.put(channel_id, shared)
        return shared, None

    def forget_cached(self, channel_id: str) -> None:
        """A channel_shared event: the next look-up asks Slack again."""
        self._shared.drop(channel_id)


def is_from_another_app(event: dict, answered: frozenset) -> bool:
    """Posted by a bot or app (bot_id, bot_profile or app_id) not in FINDIMAGE_ANSWER_BOTS: answering one
    invites its answer in turn, and two findimage installations in one channel would answer each other."""
    profile = event.get("bot_profile") or {}
    ids = {event.get("bot_id"), event.get("app_id"), profile.get("id"), profile.get("app_id")} - {None}
    return bool(ids or event.get("bot_profile")) and not ids & answered

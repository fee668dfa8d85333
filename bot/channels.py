"""Where the bot may show archive images: not to other organisations, and only in enabled channels.

A Slack Connect channel (shared with another organisation) shows every message to people outside the
team; answering there would hand the archive to them. So would answering users of another team. Both
are refused with one sentence, unless FINDIMAGE_ALLOW_SHARED_CHANNELS=true. FINDIMAGE_CHANNELS, when
set, limits the bot to those channel ids.

Events say whether their channel is shared (`is_ext_shared_channel` in the envelope); slash commands do
not, so their channel is looked up with conversations.info (cached for a few minutes). When that look-up
fails, the bot does not guess: it refuses.
"""
from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

CHANNEL_INFO_TTL_SECONDS = 300.0

NOT_ENABLED = ("I am not enabled in this channel, so I show no archive images here; ask whoever runs findimage "
               "to add it to FINDIMAGE_CHANNELS if you need me here.")
SHARED_CHANNEL = ("This channel is shared with another organisation, so I do not show images from the team's "
                  "archive here.")
OTHER_TEAM = "I only show images from the team's archive to members of its own workspace."
CANNOT_CHECK_SCOPE = ("I could not check whether this channel is shared with another organisation, so I show no "
                      "archive images here; ask whoever runs findimage to add the `channels:read`, `groups:read`, "
                      "`im:read` and `mpim:read` scopes to the app and reinstall it.")
CANNOT_CHECK = ("I could not check whether this channel is shared with another organisation, so I show no "
                "archive images here; please try again in a minute.")


class ChannelPolicy:
    def __init__(self, settings, team_id: str | None, ttl_seconds: float = CHANNEL_INFO_TTL_SECONDS,
                 clock=time.monotonic):
        self.allow_shared = settings.allow_shared_channels
        self.channels = frozenset(settings.channels or ())
        self.team_id = team_id
        self._ttl = ttl_seconds
        self._clock = clock
        self._shared: dict[str, tuple[float, bool]] = {}  # channel id -> (valid until, externally shared)
        self._lock = threading.Lock()

    def quick_refusal(self, channel_id: str | None, user_team: str | None) -> str | None:
        """What can be decided from the request alone: the allowlist and the requester's team."""
        if self.channels and channel_id not in self.channels:
            return NOT_ENABLED
        if not self.allow_shared and user_team and self.team_id and user_team != self.team_id:
            return OTHER_TEAM
        return None

    def event_refusal(self, body: dict, event: dict) -> str | None:
        """For an Events API delivery: the envelope says whether the channel is shared with another organisation."""
        refusal = self.quick_refusal(event.get("channel"), event.get("user_team") or event.get("team"))
        if refusal is None and not self.allow_shared and body.get("is_ext_shared_channel") is True:
            return SHARED_CHANNEL
        return refusal

    def channel_refusal(self, client: WebClient, channel_id: str) -> str | None:
        """For a slash command: whether its channel is shared, from conversations.info (cached)."""
        if self.allow_shared:
            return None
        now = self._clock()
        with self._lock:
            known = self._shared.get(channel_id)
        if known is None or now >= known[0]:
            try:
                channel = client.conversations_info(channel=channel_id)["channel"]
            except SlackApiError as exc:
                error = exc.response.get("error")
                log.warning("conversations.info for %s failed (%s); not answering there", channel_id, error)
                return CANNOT_CHECK_SCOPE if error == "missing_scope" else CANNOT_CHECK
            except Exception as exc:
                log.warning("conversations.info for %s failed (%s); not answering there", channel_id,
                            type(exc).__name__)
                return CANNOT_CHECK
            # A pending share is one acceptance away from showing everything to the other organisation.
            shared = bool(channel.get("is_ext_shared") or channel.get("is_pending_ext_shared"))
            known = (now + self._ttl, shared)
            with self._lock:
                self._shared[channel_id] = known
        return SHARED_CHANNEL if known[1] else None

"""Who may see what: the one decision of which images a request may be answered with, and whether a
channel's images may be remembered or forgotten.

Every path asks `decide`: a slash command, a posted image, a button, the message shortcut, the Home tab's
examples, `remember`/`forget`/`remember status`, the events that remember new posts, and the CLI's
`--channel`. It is pure: what it needs to know (is the channel on the allowlist, shared with another
organisation, remembered; is the requester of this workspace) it asks of `Facts`, lazily and in an order
that asks Slack nothing a cheaper fact already settles (bot.channels gathers them, cached). A table-driven
test (tests/unit/findimage/test_visibility.py) holds its answers.

The rules:
- The archive is shown only where the allowlist (FINDIMAGE_CHANNELS) lets the bot answer, to members of
  this workspace, in a conversation not shared with another organisation (unless
  FINDIMAGE_ALLOW_SHARED_CHANNELS).
- A channel's remembered images are seen only by a query made in that very channel (never a direct
  message, never the Home tab), while it is remembered and not shared with another organisation, whatever
  FINDIMAGE_ALLOW_SHARED_CHANNELS says: people outside the team never see what was posted before they
  joined. The CLI sees them for the channel its operator names.
- A channel is remembered only where the bot may answer (the allowlist included): a channel that leaves
  the allowlist stops being remembered. Forgetting is never refused.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Purpose(Enum):
    ANSWER = "answer"  # search and show images
    REMEMBER = "remember"  # turn remembering on, or remember a posted image
    FORGET = "forget"  # forget, or say what is remembered


class Why(Enum):
    """Why a request is refused (bot.channels says each in one sentence)."""

    NOT_ENABLED = "not enabled"  # not on FINDIMAGE_CHANNELS
    OTHER_TEAM = "other team"  # the requester is not a member of this workspace
    SHARED = "shared"  # shared with another organisation
    NOT_A_MEMBER = "not a member"  # the bot cannot see the conversation
    CANNOT_CHECK = "cannot check"  # Slack could not be asked just now
    CANNOT_CHECK_SCOPE = "cannot check: scope"  # the app lacks the scope to ask
    CANNOT_CHECK_USER = "cannot check the user"
    CANNOT_CHECK_USER_SCOPE = "cannot check the user: scope"
    REMEMBER_OFF = "remembering off"  # FINDIMAGE_REMEMBER=off
    NOT_A_CHANNEL = "not a channel"  # a direct message: no members but the two
    ARCHIVED = "archived"


class Where(Enum):
    CHANNEL = "channel"  # a public or private channel (C..., G...)
    DIRECT = "direct"  # a direct message or a group DM (D...), the Home tab's examples included
    HOME = "home"  # the App Home tab itself
    CLI = "cli"  # `findimage search --channel`: its operator sees what they name


@dataclass(frozen=True)
class Place:
    """Where a request was made (for a button: where the button was; for the shortcut: the message's channel)."""

    where: Where
    channel_id: str | None

    @classmethod
    def of(cls, channel_id: str | None) -> Place:
        """A Slack conversation by its id: channels begin with C (public) or G (private, older ones)."""
        is_channel = bool(channel_id) and str(channel_id)[0] in "CG"
        return cls(Where.CHANNEL if is_channel else Where.DIRECT, channel_id)

    @classmethod
    def home(cls, dm_channel_id: str | None) -> Place:
        return cls(Where.HOME, dm_channel_id)

    @classmethod
    def cli(cls, channel_id: str | None) -> Place:
        return cls(Where.CLI, channel_id)


@dataclass(frozen=True)
class Conversation:
    """What Slack says of a conversation; `problem` when it could not be asked (then nothing is assumed)."""

    shared: bool = False
    problem: Why | None = None
    archived: bool = False
    member: bool = True


class Facts(Protocol):
    """What the decision may need, looked up only when asked (bot.channels: Slack, cached)."""

    def enabled(self) -> bool:
        """The allowlist lets the bot work in this conversation."""
        ...

    def team(self) -> Why | None:
        """None when the requester is a member of this workspace (or no person asked: an event)."""
        ...

    def conversation(self) -> Conversation: ...

    def remembered(self) -> bool:
        """Remembering is on in this channel."""
        ...


class OperatorFacts:
    """The CLI's facts: its operator can read the stores anyway, so only whether the channel they name is
    remembered matters (no Slack is asked)."""

    def __init__(self, is_remembered: Callable[[str | None], bool], channel_id: str | None):
        self._is_remembered, self._channel_id = is_remembered, channel_id

    def enabled(self) -> bool:
        return True

    def team(self) -> Why | None:
        return None

    def conversation(self) -> Conversation:
        return Conversation()

    def remembered(self) -> bool:
        return self._is_remembered(self._channel_id)


@dataclass(frozen=True)
class Rules:
    allow_shared: bool = False  # FINDIMAGE_ALLOW_SHARED_CHANNELS
    remember: bool = True  # FINDIMAGE_REMEMBER


@dataclass(frozen=True)
class Sight:
    """The decision: refused (and why), or which sources may be searched."""

    refusal: Why | None = None
    archive: bool = False
    channel: str | None = None  # the channel whose remembered images join (REMEMBER/FORGET: the one acted on)

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def decide(purpose: Purpose, place: Place, facts: Facts, rules: Rules) -> Sight:
    if purpose is Purpose.FORGET:
        # Deleting what was kept is never refused: not after the channel left the allowlist, not in a
        # channel shared since. Nothing is shown by it but a count.
        return Sight(channel=place.channel_id if place.where is Where.CHANNEL else None)
    if purpose is Purpose.REMEMBER:
        return _remember(place, facts, rules)
    if place.where is Where.CLI:
        remembered = bool(place.channel_id) and facts.remembered()
        return Sight(archive=True, channel=place.channel_id if remembered else None)
    if not facts.enabled():
        return Sight(Why.NOT_ENABLED)
    if not rules.allow_shared:
        refusal = facts.team() or _shared(facts.conversation())
        if refusal is not None:
            return Sight(refusal)
    if place.where is not Where.CHANNEL or not rules.remember or not facts.remembered():
        return Sight(archive=True)
    conversation = facts.conversation()  # already asked above, unless shared channels are allowed
    seen = conversation.problem is None and not conversation.shared
    return Sight(archive=True, channel=place.channel_id if seen else None)


def _remember(place: Place, facts: Facts, rules: Rules) -> Sight:
    if not rules.remember:
        return Sight(Why.REMEMBER_OFF)
    if place.where is not Where.CHANNEL:
        return Sight(Why.NOT_A_CHANNEL)
    if not facts.enabled():
        return Sight(Why.NOT_ENABLED)
    refusal = facts.team()
    if refusal is not None:
        return Sight(refusal)
    conversation = facts.conversation()
    refusal = _shared(conversation)
    if refusal is None and conversation.archived:
        refusal = Why.ARCHIVED
    if refusal is None and not conversation.member:  # no events and no history without it
        refusal = Why.NOT_A_MEMBER
    return Sight(refusal) if refusal is not None else Sight(channel=place.channel_id)


def _shared(conversation: Conversation) -> Why | None:
    return conversation.problem or (Why.SHARED if conversation.shared else None)

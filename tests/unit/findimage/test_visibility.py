"""Who may see what, as one table: for every path a request comes by (a slash command, a posted image, a
button, the message shortcut, the Home tab, remember/forget/status, the events that remember a post, the
CLI's --channel), the place it comes from and what Slack says, the decision findimage.visibility makes."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from findimage.visibility import (
    Conversation,
    OperatorFacts,
    Place,
    Purpose,
    Rules,
    Sight,
    Where,
    Why,
    decide,
)

ANSWER, REMEMBER, FORGET = Purpose.ANSWER, Purpose.REMEMBER, Purpose.FORGET
C, D = "C0TEAM", "D0ALICE"


@dataclass
class Told:
    """What Slack (and the settings) say; every fact asked is counted, so the table also shows that
    Slack is not asked what a cheaper fact settled."""

    enabled_: bool = True
    team_: Why | None = None
    conversation_: Conversation = Conversation()
    remembered_: bool = False

    def __post_init__(self):
        self.asked: list[str] = []

    def enabled(self) -> bool:
        self.asked.append("enabled")
        return self.enabled_

    def team(self) -> Why | None:
        self.asked.append("team")
        return self.team_

    def conversation(self) -> Conversation:
        self.asked.append("conversation")
        return self.conversation_

    def remembered(self) -> bool:
        self.asked.append("remembered")
        return self.remembered_


SHARED = Conversation(shared=True)
UNKNOWN = Conversation(problem=Why.CANNOT_CHECK)
AWAY = Conversation(problem=Why.NOT_A_MEMBER)
ALLOW_SHARED = Rules(allow_shared=True)
OFF = Rules(remember=False)

# (path, purpose, place, facts, rules, decision)
TABLE = [
    # a slash command, a posted image, a button, the shortcut: all answer in a channel
    ("command in an ordinary channel", ANSWER, Place.of(C), Told(), Rules(), Sight(archive=True)),
    ("command in a remembered channel", ANSWER, Place.of(C), Told(remembered_=True), Rules(),
     Sight(archive=True, channel=C)),
    ("command in a private channel (G)", ANSWER, Place.of("G0PRIV"), Told(remembered_=True), Rules(),
     Sight(archive=True, channel="G0PRIV")),
    ("command off the allowlist", ANSWER, Place.of(C), Told(enabled_=False, remembered_=True), Rules(),
     Sight(Why.NOT_ENABLED)),
    ("command by another organisation's user", ANSWER, Place.of(C), Told(team_=Why.OTHER_TEAM), Rules(),
     Sight(Why.OTHER_TEAM)),
    ("user's team cannot be learned", ANSWER, Place.of(C), Told(team_=Why.CANNOT_CHECK_USER), Rules(),
     Sight(Why.CANNOT_CHECK_USER)),
    ("posted image in a Slack Connect channel", ANSWER, Place.of(C), Told(conversation_=SHARED), Rules(),
     Sight(Why.SHARED)),
    ("button in a channel Slack cannot describe now", ANSWER, Place.of(C), Told(conversation_=UNKNOWN), Rules(),
     Sight(Why.CANNOT_CHECK)),
    ("shortcut in a conversation the bot is not in", ANSWER, Place.of(C), Told(conversation_=AWAY), Rules(),
     Sight(Why.NOT_A_MEMBER)),
    ("shared channels allowed: the archive, never what was remembered", ANSWER, Place.of(C),
     Told(conversation_=SHARED, remembered_=True, team_=Why.OTHER_TEAM), ALLOW_SHARED, Sight(archive=True)),
    ("shared channels allowed, channel unknown: no remembered images", ANSWER, Place.of(C),
     Told(conversation_=UNKNOWN, remembered_=True), ALLOW_SHARED, Sight(archive=True)),
    ("remembering off: a remembered channel's images are not searched", ANSWER, Place.of(C),
     Told(remembered_=True), OFF, Sight(archive=True)),
    ("posted image in a direct message", ANSWER, Place.of(D), Told(remembered_=True), Rules(), Sight(archive=True)),
    ("button of an answer in a direct message", ANSWER, Place.of(D), Told(conversation_=SHARED), Rules(),
     Sight(Why.SHARED)),
    # the Home tab and its examples (answered in the person's direct messages)
    ("Home tab", ANSWER, Place.home(D), Told(remembered_=True), Rules(), Sight(archive=True)),
    ("Home tab off the allowlist", ANSWER, Place.home(D), Told(enabled_=False), Rules(), Sight(Why.NOT_ENABLED)),
    ("Home tab of another organisation's user", ANSWER, Place.home(D), Told(team_=Why.OTHER_TEAM), Rules(),
     Sight(Why.OTHER_TEAM)),
    # remember: the command, and each posted image or history page it remembers
    ("remember in a channel", REMEMBER, Place.of(C), Told(), Rules(), Sight(channel=C)),
    ("remember with remembering off", REMEMBER, Place.of(C), Told(), OFF, Sight(Why.REMEMBER_OFF)),
    ("remember in a direct message", REMEMBER, Place.of(D), Told(), Rules(), Sight(Why.NOT_A_CHANNEL)),
    ("remember off the allowlist (a post there is not remembered)", REMEMBER, Place.of(C),
     Told(enabled_=False, remembered_=True), Rules(), Sight(Why.NOT_ENABLED)),
    ("remember by another organisation's user", REMEMBER, Place.of(C), Told(team_=Why.OTHER_TEAM), Rules(),
     Sight(Why.OTHER_TEAM)),
    ("remember in a shared channel, even where shared channels are allowed", REMEMBER, Place.of(C),
     Told(conversation_=SHARED), ALLOW_SHARED, Sight(Why.SHARED)),
    ("remember in an archived channel", REMEMBER, Place.of(C), Told(conversation_=Conversation(archived=True)),
     Rules(), Sight(Why.ARCHIVED)),
    ("remember where the bot is not a member", REMEMBER, Place.of(C),
     Told(conversation_=Conversation(member=False)), Rules(), Sight(Why.NOT_A_MEMBER)),
    ("remember where Slack cannot be asked", REMEMBER, Place.of(C), Told(conversation_=UNKNOWN), Rules(),
     Sight(Why.CANNOT_CHECK)),
    # forget and status: never refused
    ("forget in a channel", FORGET, Place.of(C), Told(), Rules(), Sight(channel=C)),
    ("forget off the allowlist", FORGET, Place.of(C), Told(enabled_=False), Rules(), Sight(channel=C)),
    ("forget in a channel shared since", FORGET, Place.of(C), Told(conversation_=SHARED), Rules(), Sight(channel=C)),
    ("forget with remembering off", FORGET, Place.of(C), Told(), OFF, Sight(channel=C)),
    ("forget in a direct message: nothing to forget", FORGET, Place.of(D), Told(), Rules(), Sight()),
    # the CLI: its operator names the channel
    ("CLI without --channel", ANSWER, Place.cli(None), Told(), Rules(), Sight(archive=True)),
    ("CLI --channel of a remembered channel", ANSWER, Place.cli(C), Told(remembered_=True), Rules(),
     Sight(archive=True, channel=C)),
    ("CLI --channel of a channel not remembered", ANSWER, Place.cli(C), Told(), Rules(), Sight(archive=True)),
]


@pytest.mark.parametrize(("path", "purpose", "place", "facts", "rules", "expected"), TABLE, ids=[r[0] for r in TABLE])
def test_the_decision_for_each_path(path, purpose, place, facts, rules, expected):
    assert decide(purpose, place, facts, rules) == expected


def test_every_purpose_and_place_is_in_the_table():
    covered = {(row[1], row[2].where) for row in TABLE}
    assert {(p, w) for p in (ANSWER,) for w in Where} <= covered
    assert {(p, w) for p in (REMEMBER, FORGET) for w in (Where.CHANNEL, Where.DIRECT)} <= covered


def test_slack_is_not_asked_what_the_allowlist_settles():
    facts = Told(enabled_=False)
    decide(ANSWER, Place.of(C), facts, Rules())
    assert facts.asked == ["enabled"]


def test_an_ordinary_channel_costs_no_registry_read_before_slack_is_asked():
    """The team and the channel first (refusals), whether it is remembered last."""
    facts = Told()
    decide(ANSWER, Place.of(C), facts, Rules())
    assert facts.asked == ["enabled", "team", "conversation", "remembered"]


def test_a_direct_message_never_reads_the_registry():
    facts = Told()
    decide(ANSWER, Place.of(D), facts, Rules())
    assert "remembered" not in facts.asked


def test_the_cli_asks_only_whether_the_channel_is_remembered():
    asked = []
    facts = OperatorFacts(lambda channel: asked.append(channel) or channel == C, C)
    assert decide(ANSWER, Place.cli(C), facts, Rules()) == Sight(archive=True, channel=C)
    assert asked == [C]

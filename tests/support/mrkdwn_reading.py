"""How a Slack client reads a mrkdwn text, as far as tests of untrusted names need it: its lines, the
`<...>` sequences it turns into links and mentions, the bold, italic and struck-through text, quotes,
special mentions and URLs outside code spans, and characters a reader cannot see.

An approximation of https://api.slack.com/reference/surfaces/formatting made stricter than Slack where
in doubt: a `<...>` counts wherever it is, even in a code span; a code span is one line without a
backtick in it, as Slack draws it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CODE = re.compile(r"`[^`\n]+`")
_TOKEN = re.compile(r"<[^<>\n]*>")
_STYLES = [re.compile(rf"(?<![\w{c}])\{c}(?=\S)([^{c}\n]*?\S)\{c}(?![\w{c}])") for c in "*_~"]
_SPECIAL = re.compile(r"(?<![\w@])@(?:channel|here|everyone|group)\b", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@dataclass(frozen=True)
class Reading:
    lines: list[str]
    tokens: list[str]  # links, user and channel mentions, <!channel>, <!here>, dates
    styled: list[str]  # the text set in bold, italics or strike-through
    quotes: list[str]  # lines shown as a quote
    mentions: list[str]  # @channel, @here, @everyone typed out (outside code spans)
    urls: list[str]  # bare URLs outside code spans, which Slack may link
    hidden: list[str]  # control, format and separator characters other than "\\n", as \\u escapes


def read_mrkdwn(text: str) -> Reading:
    lines = re.split(r"\r\n|[\n\r\u2028\u2029\x0b\x0c\x1c-\x1e\x85]", text)
    outside = [_CODE.sub(" ", line) for line in lines]
    return Reading(
        lines=lines,
        tokens=_TOKEN.findall(text),
        styled=[m.group(1) for line in outside for style in _STYLES for m in style.finditer(line)],
        quotes=[line for line in lines if line.startswith((">", "&gt;"))],
        mentions=[m.group() for line in outside for m in _SPECIAL.finditer(line)],
        urls=[m.group() for line in outside for m in _URL.finditer(line)],
        hidden=[f"\\u{ord(c):04x}" for c in text if c != "\n" and unicodedata.category(c) in HIDDEN_CATEGORIES],
    )

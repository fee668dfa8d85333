"""Text from outside shown in Slack: archive paths, Slack file names and titles, text read from images,
the query and options as typed.

Whoever fills the archive or posts in a channel chooses these strings, and Slack reads a message as
mrkdwn: a file named "photo.jpg\\n*IT notice*: reset your password at <https://evil.example|slack.com>"
would otherwise post a line of its own, in bold, with a link that says slack.com; `<!channel>` would ping
everyone; a right-to-left override would show "gpj.exe" as "exe.jpg". Slack lets a sender escape only
`&`, `<` and `>` (https://api.slack.com/reference/surfaces/formatting#escaping), and mrkdwn has no escape
for `*`, `_`, `~`, backticks or a `>` at a line's start. So, in every message, notification text and
Block Kit text this bot sends:

- `one_line`: control characters (C0, DEL, C1), format characters (bidi marks, embeddings, overrides
  and isolates, the Arabic letter mark, zero-width spaces and joiners, the byte order mark), line and
  paragraph separators and unpaired surrogates (undecodable bytes of a file name) become one visible
  `�` per run, so a name is one line and reads in the order it is stored. Plain-text fields (image
  titles, alt texts, uploaded files' names and titles) take this alone: Slack formats nothing there.
- `shown`: for mrkdwn, the same one line with `&`, `<` and `>` escaped (no mention, link or
  `<!channel>`), `@channel`, `@here` and `@everyone` broken (no automatic mention), in a code span whose
  backticks inside are replaced (no bold, italics, strike-through, quote or auto-link): the name still
  reads, and copies, as it is stored.
- `quotable`: text read from an image, quoted with the query's words in bold (so not in a code span):
  its mrkdwn formatting characters and line breaks become spaces; the caller escapes it with `escape`.
- `fit`: a message cut to Slack's length limit after escaping: at a line's end, never inside an entity
  such as `&amp;` or a code span.
"""
from __future__ import annotations

import re
import unicodedata

PLACEHOLDER = "\ufffd"  # what a control or format character shows as: visible, and clearly not the name
SHOWN_CHARS = 300  # the most one name or query takes of a message (escaped, code span included)
ELLIPSIS = "…"
# Other (control, format, surrogate) and the line and paragraph separators; private-use and unassigned
# characters are left alone (they may be glyphs or newer emoji).
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SPECIAL_MENTION = re.compile(r"@(?=(?:channel|here|everyone|group)\b)", re.IGNORECASE)
_BACKTICK = "\u02cb"  # ˋ (modifier letter grave accent): looks like a backtick, cannot end a code span
_FORMATTING = str.maketrans({c: " " for c in "*_~`\t\n\r"})  # a read line's breaks are spaces
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")  # an entity cut before its ";"


def one_line(text: str) -> str:
    """`text` on one line, with each run of control, format and separator characters as one `�`."""
    if text.isprintable():  # Python's printable excludes exactly these categories (and spaces but " ")
        return text
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in _HIDDEN:
            if not out or out[-1] != PLACEHOLDER:
                out.append(PLACEHOLDER)
        else:
            out.append(char)
    return "".join(out)


def escape(text: str) -> str:
    """Slack's three control characters, so echoed text cannot ping @channel or forge links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Untrusted `text` as inline mrkdwn: one line, escaped, in a code span, at most `limit` characters
    (cut with `…`, never inside an entity)."""
    body = _SPECIAL_MENTION.sub("\uff20", one_line(text).strip().replace("`", _BACKTICK)) or PLACEHOLDER
    pieces = [_ENTITIES.get(char, char) for char in body]
    if sum(map(len, pieces)) > limit - 2:  # the backticks
        room = limit - 2 - len(ELLIPSIS)
        kept = []
        for piece in pieces:
            if len(piece) > room:
                break
            kept.append(piece)
            room -= len(piece)
        pieces = [*kept, ELLIPSIS]
    return "`" + "".join(pieces) + "`"


def quotable(text: str) -> str:
    """Text read from an image, for a quote that sets some words in bold: one line, no special mentions,
    its mrkdwn formatting characters as spaces (to be escaped with `escape`, piece by piece)."""
    return _SPECIAL_MENTION.sub("\uff20", one_line(text.translate(_FORMATTING)))


def fit(text: str, limit: int) -> str:
    """mrkdwn `text` within `limit` characters: whole lines while they fit, then `…`. A first line longer
    than `limit` is cut before an entity or code span it would split."""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        if used + len(line) + len("\n" + ELLIPSIS) > limit:
            break
        kept.append(line)
        used += len(line) + 1
    if kept:
        return "\n".join(kept) + "\n" + ELLIPSIS
    cut = _ENTITY_TAIL.sub("", text[:limit - len(ELLIPSIS)])
    if cut.count("`") % 2:  # an open code span: its text would be read as mrkdwn
        cut = cut[:cut.rindex("`")]
    return cut + ELLIPSIS

"""What the bot says: usage, result texts and Block Kit blocks. Pure functions, no Slack calls."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from findimage.duplicates import Group, human_bytes
from findimage.names import fold
from findimage.query import MAX_K, Query
from findimage.records import Match, Posted
from findimage.search import SearchResult

from .buttons import answer_actions
from .untrusted import escape, fit, one_line, quotable, shown


def usage_text(default_k: int, backfill_days: int | None = None) -> str:
    """`default_k`: how many images a command shows where it names none (findimage.query.default_k);
    `backfill_days`: remembering posted images is on (FINDIMAGE_REMEMBER), reading this many days back."""
    remember = [] if backfill_days is None else [
        f"• `/findimage remember`: I remember the images posted in this channel from now on (and those of the last "
        f"{backfill_days} days), searchable here and only here; `/findimage remember status` says how far I am, "
        "`/findimage forget` deletes them all."]
    return "\n".join([
        "*Find images in the team's archive*",
        "• `/findimage a snow covered mountain`: the archive images that best fit a description, in any language.",
        f"• `k=8`: how many images to show (1 to {MAX_K}, default {default_k}).",
        "• `in:events/2024`: only images in that archive folder.",
        "  Example: `/findimage in:events/2024 k=8 stage with red lights`",
        "• `after:2024-05 before:2024-07`: only photos taken in that time (YYYY, YYYY-MM or YYYY-MM-DD; "
        "after is inclusive, before is not). Example: `/findimage after:2024-05 before:2024-07 Sommerfest`",
        "• Folder and file names count too: `/findimage Sommerfest` finds `2024-06 Sommerfest/`.",
        "• Post a photo in a channel I am in, and I reply in its thread with the most similar archive images "
        "(byte-identical copies are marked as exact matches; a near-identical copy of an archive image comes first, "
        "as already in the archive; near copies among the results are shown as one).",
        "• `/findimage duplicates` (or `duplicates in:events/2024`): the near-identical images in the archive and "
        "the space their extra copies take, only to you.",
        *remember,
        "• Results are posted to the channel for everyone; help and problems only to you.",
    ])


# Every name, path, title, query and folder below comes from outside: shown() puts it on one line in a
# code span (bot/untrusted.py says why), so it cannot add lines, links, mentions or formatting.

def searching_text(query: Query) -> str:
    where = f" in {shown(query.folder)}" if query.folder else ""
    return f"Searching the archive for {shown(query.text or '')}{where}…"


def text_heading(user_id: str, text: str, folder: str | None) -> str:
    where = f" in {shown(folder)}" if folder else ""
    return f"<@{user_id}> searched the archive for {shown(text)}{where}:"


def image_heading(file_name: str) -> str:
    return f"Archive images most similar to {shown(file_name)}:"


def similar_heading(user_id: str, relative_path: str) -> str:
    return (f"<@{user_id}> asked for more like {shown(relative_path)} "
            "(that image itself is left out, its nearest neighbours follow):")


def more_heading(user_id: str, query: Query, about: str, count: int) -> str:
    """`about`: the query as the user knows it (the text, or the archive path of the image)."""
    where = f" in {shown(query.folder)}" if query.folder else ""
    what = shown(about) if query.text is not None else f"images like {shown(about)}"
    return f"<@{user_id}> asked for more of {what}{where}: results {query.skip + 1} to {query.skip + count}:"


@dataclass
class Answer:
    """What one query (a text or one posted image) came to: matches, or a sentence instead of them."""

    heading: str  # mrkdwn, already escaped
    result: SearchResult | None = None
    instead: str | None = None  # why there are no matches to show (empty index, an error), for the user
    missing: set[str] = field(default_factory=set)  # image_ids whose file left the archive since indexing
    first_rank: int = 1  # later pages ("Show more") go on counting
    next_page: Query | None = None  # what "Show more" asks for; None: no more to show

    def ranked(self) -> list[tuple[int, Match]]:
        return list(enumerate(self.matches, self.first_rank))

    def actions(self) -> dict | None:
        """The answer's buttons: "More like #n" per match still in the archive, and "Show more"."""
        listed = [(rank, m.image_id) for rank, m in self.ranked() if m.image_id not in self.missing]
        return answer_actions(listed, self.next_page) if self.matches else None

    @property
    def matches(self) -> list[Match]:
        return self.result.matches if self.result and self.instead is None else []

    @property
    def exact(self) -> set[str]:
        """image_ids byte-identical to the query image (none without a result)."""
        return self.result.exact if self.result is not None else set()


def uncertain_note(result: SearchResult) -> str:
    best = result.matches[0].score
    return (f"_Uncertain: even the best match scores only {best:.2f} (below {result.weak_score:.2f}), "
            "so these are guesses rather than answers._")


def posted_note(posted: Posted) -> str:
    """Who posted a remembered image and when: "posted by @anna on 5 Mar 2024, in this channel"."""
    return f"posted by <@{posted.poster}> on {_day(posted)}, in this channel{_permalink(posted)}"


def repost_note(posted: Posted) -> str:
    """A posted picture seen in its channel before (a near-identical copy remembered there)."""
    return f"Posted here before by <@{posted.poster}> on {_day(posted)}{_permalink(posted)}"


def already_note(match: Match) -> str:
    """A posted picture that is a near-identical copy of an archive image (the first match)."""
    return f"This picture is already in the archive: {shown(match.relative_path)}"


def _day(posted: Posted) -> str:
    when = datetime.fromtimestamp(float(posted.message_ts))
    return f"{when.day} {when:%b %Y}"


def _permalink(posted: Posted) -> str:
    """" · open in Slack" linking the posting, where its permalink is one (Slack's https link, nothing in it
    that would end the link)."""
    return (f" · <{posted.permalink}|open in Slack>" if posted.permalink.startswith("https://")
            and not set(posted.permalink) & set("<>| ") else "")


def shown_name(match: Match) -> str:
    """An archive image by its path, a remembered one by its title."""
    return match.posted.title or match.image_name if match.posted else match.relative_path


def match_label(rank: int, match: Match, exact: bool) -> str:
    """One line per match: rank, score, archive path (and whether it is the very same file)."""
    if match.posted is not None:
        label = f"*{rank}.* `{match.score:.3f}` {shown(shown_name(match))} — {posted_note(match.posted)}"
        if exact:
            label += " — *exact match* (byte-identical)"
        reasons = [signal for signal in match.matched if signal != "image"]
        return label + (f" · _{' and '.join(reasons)} matched_" if reasons else "")
    label = f"*{rank}.* `{match.score:.3f}` {shown(match.relative_path)}"
    if exact:
        label += " — *exact match* (byte-identical)"
    if match.taken:
        label += f" · {match.taken[:10]}"
    if match.also_at:
        more = f" and {len(match.also_at) - 2} more" if len(match.also_at) > 2 else ""
        label += f" · also at {', '.join(shown(path) for path in match.also_at[:2])}{more}"
    if match.near_copies:
        more = f" and {len(match.near_copies) - 2} more" if len(match.near_copies) > 2 else ""
        label += f" · near copies at {', '.join(shown(path) for path in match.near_copies[:2])}{more}"
    reasons = [signal for signal in match.matched if signal != "image"]
    if reasons:  # why it stands above a higher score: the score shown is the CLIP similarity
        label += f" · _{' and '.join(reasons)} matched_"
    return label


def duplicates_text(groups: Sequence[Group], folder: str | None, most: int) -> str:
    """`/findimage duplicates`: the space the extra copies take, and the groups whose copies take the most
    (at most `most`), each member by its path and size."""
    where = f" under {shown(folder)}" if folder else ""
    if not groups:
        return f"No near-identical images in the archive{where}."
    extra = sum(g.extra_bytes for g in groups)
    copies = sum(len(g.members) - 1 for g in groups)
    lines = [f"*{len(groups):,} group(s) of near-identical images* in the archive{where}: {copies:,} extra "
             f"cop(ies) take {human_bytes(extra)}."]
    for number, found in enumerate(groups[:most], start=1):
        members = ", ".join(f"{shown(m.relative_path)} ({human_bytes(m.bytes)})" for m in found.members)
        lines.append(f"*{number}.* {members}")
    if len(groups) > most:
        lines.append(f"... and {len(groups) - most:,} more group(s): `findimage duplicates` lists them all.")
    return fit("\n".join(lines), SECTION_CHARS)


SNIPPET_CHARS = 160
_WORDS = re.compile(r"([^\W_]+)")


def text_snippet(line: str, words: Sequence[str], width: int = SNIPPET_CHARS) -> str:
    """The line of text read from an image, as a quote: the query's words in bold, the rest escaped like
    any untrusted text (text in a screenshot must not ping @channel, format or link), cut around the
    first word that matched."""
    wanted = set(words)
    parts = _WORDS.split(" ".join(quotable(line).split()))
    hits = [i for i in range(1, len(parts), 2) if fold(parts[i]) in wanted]
    start = sum(len(p) for p in parts[:hits[0]]) if hits else 0
    begin = max(0, start - width // 3)
    kept_any, used, out = False, 0, []
    for i, part in enumerate(parts):
        end = used + len(part)
        if end > begin and used < begin + width:
            piece = part[max(0, begin - used):begin + width - used]
            out.append(f"*{escape(piece)}*" if i in hits and piece == part else escape(piece))
            kept_any = True
        used = end
    text = "".join(out).strip() if kept_any else ""
    return ("…" if begin > 0 else "") + text + ("…" if used > begin + width else "")


def file_title(rank: int, match: Match, exact: bool) -> str:
    suffix = " (exact match)" if exact else ""
    return f"{rank}. {one_line(shown_name(match))} · {match.score:.3f}{suffix}"  # plain_text: one line is enough


def image_block(rank: int, match: Match, exact: bool, url_for: Callable[[str, str], str] | None) -> dict | None:
    """A match as an image block: a remembered one by reference to its Slack file (never uploaded again),
    an archive one by its signed link (None where there are no links: it is uploaded instead)."""
    if match.posted is not None:
        source: dict = {"slack_file": {"id": match.posted.file_id}}
    elif url_for is not None:
        source = {"image_url": url_for(match.image_id, match.sha256)}
    else:
        return None
    return {"type": "image", **source, "alt_text": one_line(shown_name(match))[:2000],
            "title": {"type": "plain_text", "text": file_title(rank, match, exact)[:2000]}}


def answer_text(answer: Answer) -> str:
    lines = [answer.heading]
    if answer.instead is not None:
        return "\n".join(lines + [answer.instead])
    result = answer.result
    if result is None:
        raise ValueError("an answer needs a result or a sentence instead of one")
    earlier = next((m.posted for m in result.reposts if m.posted is not None), None)
    if earlier is not None:
        lines.append(repost_note(earlier))
    first = result.matches[0] if result.matches else None
    if first is not None and first.image_id in result.near and first.image_id not in result.exact:
        lines.append(already_note(first))  # (a byte-identical copy is marked exact match, which says more)
    elif result.uncertain:
        lines.append(uncertain_note(result))
    for rank, match in answer.ranked():
        line = match_label(rank, match, match.image_id in result.exact)
        if match.image_id in answer.missing:
            line += " _(no longer in the archive)_"
        lines.append(line)
        if match.text_snippet and match.image_id not in answer.missing:
            lines.append(f">{text_snippet(match.text_snippet, result.words)}")
    return "\n".join(lines)


def answers_text(answers: list[Answer]) -> str:
    return "\n\n".join(answer_text(a) for a in answers)


SECTION_CHARS = 3000  # Slack's limit for a section's text (and what the bot keeps a notification text to)


def mrkdwn_section(text: str) -> dict:
    """A section of the bot's mrkdwn, cut to Slack's limit after escaping; verbatim, so Slack adds no links
    or mentions of its own to the names in it."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_CHARS), "verbatim": True}}


def image_blocks(answers: list[Answer], url_for: Callable[[str, str], str]) -> list[dict]:
    """Per answer: a section with the heading and ranked list, then each match as an image block."""
    blocks: list[dict] = []
    for answer in answers:
        blocks.append(mrkdwn_section(answer_text(answer)))
        if not answer.matches:
            continue
        exact = answer.exact
        for rank, match in answer.ranked():
            block = image_block(rank, match, match.image_id in exact, url_for)
            if match.image_id not in answer.missing and block is not None:
                blocks.append(block)
        actions = answer.actions()
        if actions:
            blocks.append(actions)
    return blocks


def button_blocks(answers: list[Answer]) -> list[dict]:
    """What follows the upload of answers' archive images (an upload cannot carry blocks): per answer
    its remembered images (shown by reference to their Slack files) and its buttons, introduced by its
    heading when one message answers several images."""
    blocks: list[dict] = []
    for answer in answers:
        actions = answer.actions()
        posted = [image_block(rank, m, m.image_id in answer.exact, None) for rank, m in answer.ranked()
                  if m.posted is not None and m.image_id not in answer.missing]
        if actions is None and not posted:
            continue
        if len(answers) > 1:
            blocks.append(mrkdwn_section(answer.heading))
        blocks += [b for b in posted if b is not None]
        if actions is not None:
            blocks.append(actions)
    return blocks

"""What the bot says: usage, result texts and Block Kit blocks. Pure functions, no Slack calls."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from findimage.duplicates import Group, human_bytes
from findimage.i18n import Language, english
from findimage.names import fold
from findimage.query import MAX_K, Query
from findimage.records import Match, Posted
from findimage.search import SearchResult

from .buttons import answer_actions
from .untrusted import escape, fit, one_line, quotable, shown


def usage_text(said: Language, default_k: int, backfill_days: int | None = None) -> str:
    """`default_k`: how many images a command shows where it names none (findimage.query.default_k);
    `backfill_days`: remembering posted images is on (FINDIMAGE_REMEMBER), reading this many days back."""
    remember = [] if backfill_days is None else [said.ngettext(
        "• `/findimage remember`: I remember the images posted in this channel from now on (and those of the last "
        "day), searchable here and only here; `/findimage remember status` says how far I am, "
        "`/findimage forget` deletes them all.",
        "• `/findimage remember`: I remember the images posted in this channel from now on (and those of the last "
        "{count} days), searchable here and only here; `/findimage remember status` says how far I am, "
        "`/findimage forget` deletes them all.", backfill_days)]
    return "\n".join([
        said._("*Find images in the team's archive*"),
        said._("• `/findimage a snow covered mountain`: the archive images that best fit a description, in any "
               "language."),
        said._("• `k=8`: how many images to show (1 to {most}, default {default}).", most=MAX_K, default=default_k),
        said._("• `in:events/2024`: only images in that archive folder."),
        said._("  Example: `/findimage in:events/2024 k=8 stage with red lights`"),
        said._("• `after:2024-05 before:2024-07`: only photos taken in that time (YYYY, YYYY-MM or YYYY-MM-DD; "
               "after is inclusive, before is not). Example: `/findimage after:2024-05 before:2024-07 Sommerfest`"),
        said._("• Folder and file names count too: `/findimage Sommerfest` finds `2024-06 Sommerfest/`."),
        said._("• Post a photo in a channel I am in, and I reply in its thread with the most similar archive images "
               "(byte-identical copies are marked as exact matches; a near-identical copy of an archive image comes "
               "first, as already in the archive; near copies among the results are shown as one)."),
        said._("• `/findimage duplicates` (or `duplicates in:events/2024`): the near-identical images in the archive "
               "and the space their extra copies take, only to you."),
        *remember,
        said._("• Results are posted to the channel for everyone; help and problems only to you."),
    ])


# Every name, path, title, query and folder below comes from outside: shown() puts it on one line in a
# code span (bot/untrusted.py says why), so it cannot add lines, links, mentions or formatting.

def searching_text(query: Query, said: Language) -> str:
    if query.folder:
        return said._("Searching the archive for {text} in {folder}…", text=shown(query.text or ""),
                      folder=shown(query.folder))
    return said._("Searching the archive for {text}…", text=shown(query.text or ""))


def text_heading(user_id: str, text: str, folder: str | None, said: Language) -> str:
    if folder:
        return said._("<@{user}> searched the archive for {text} in {folder}:", user=user_id, text=shown(text),
                      folder=shown(folder))
    return said._("<@{user}> searched the archive for {text}:", user=user_id, text=shown(text))


def image_heading(file_name: str, said: Language) -> str:
    return said._("Archive images most similar to {name}:", name=shown(file_name))


def similar_heading(user_id: str, relative_path: str, said: Language) -> str:
    return said._("<@{user}> asked for more like {path} (that image itself is left out, its nearest neighbours "
                  "follow):", user=user_id, path=shown(relative_path))


def more_heading(user_id: str, query: Query, about: str, count: int, said: Language) -> str:
    """`about`: the query as the user knows it (the text, or the archive path of the image)."""
    what = shown(about) if query.text is not None else said._("images like {path}", path=shown(about))
    first, last = query.skip + 1, query.skip + count
    if query.folder:
        return said._("<@{user}> asked for more of {what} in {folder}: results {first} to {last}:", user=user_id,
                      what=what, folder=shown(query.folder), first=first, last=last)
    return said._("<@{user}> asked for more of {what}: results {first} to {last}:", user=user_id, what=what,
                  first=first, last=last)


@dataclass
class Answer:
    """What one query (a text or one posted image) came to: matches, or a sentence instead of them."""

    heading: str  # mrkdwn, already escaped
    result: SearchResult | None = None
    instead: str | None = None  # why there are no matches to show (empty index, an error), for the user
    missing: set[str] = field(default_factory=set)  # image_ids whose file left the archive since indexing
    first_rank: int = 1  # later pages ("Show more") go on counting
    next_page: Query | None = None  # what "Show more" asks for; None: no more to show
    said: Language = field(default_factory=english)  # the asker's: every line and button of the answer

    def ranked(self) -> list[tuple[int, Match]]:
        return list(enumerate(self.matches, self.first_rank))

    def actions(self) -> dict | None:
        """The answer's buttons: "More like #n" per match still in the archive, and "Show more"."""
        listed = [(rank, m.image_id) for rank, m in self.ranked() if m.image_id not in self.missing]
        return answer_actions(listed, self.next_page, self.said) if self.matches else None

    @property
    def matches(self) -> list[Match]:
        return self.result.matches if self.result and self.instead is None else []

    @property
    def exact(self) -> set[str]:
        """image_ids byte-identical to the query image (none without a result)."""
        return self.result.exact if self.result is not None else set()


def uncertain_note(result: SearchResult, said: Language) -> str:
    return said._("_Uncertain: even the best match scores only {best} (below {weak}), so these are guesses rather "
                  "than answers._", best=format(result.matches[0].score, ".2f"),
                  weak=format(result.weak_score, ".2f"))


def posted_note(posted: Posted, said: Language) -> str:
    """Who posted a remembered image and when: "posted by @anna on 5 Mar 2024, in this channel"."""
    note = said._("posted by <@{user}> on {day}, in this channel", user=posted.poster, day=_day(posted, said))
    return note + _permalink(posted, said)


def repost_note(posted: Posted, said: Language) -> str:
    """A posted picture seen in its channel before (a near-identical copy remembered there)."""
    return said._("Posted here before by <@{user}> on {day}", user=posted.poster,
                  day=_day(posted, said)) + _permalink(posted, said)


def already_note(match: Match, said: Language) -> str:
    """A posted picture that is a near-identical copy of an archive image (the first match)."""
    return said._("This picture is already in the archive: {path}", path=shown(match.relative_path))


def _day(posted: Posted, said: Language) -> str:
    return said.day(datetime.fromtimestamp(float(posted.message_ts)))


def _permalink(posted: Posted, said: Language) -> str:
    """" · open in Slack" linking the posting, where its permalink is one (Slack's https link, nothing in it
    that would end the link)."""
    if posted.permalink.startswith("https://") and not set(posted.permalink) & set("<>| "):
        return " · <{link}|{label}>".format(link=posted.permalink, label=said._("open in Slack"))
    return ""


def shown_name(match: Match) -> str:
    """An archive image by its path, a remembered one by its title."""
    return match.posted.title or match.image_name if match.posted else match.relative_path


def reasons_note(match: Match, said: Language) -> str:
    """Why it stands above a higher score (the score shown is the CLIP similarity): " · _name matched_"."""
    reasons = [signal for signal in match.matched if signal != "image"]
    if not reasons:
        return ""
    words = {"name": said._("name"), "text": said._("text")}
    return " · _{}_".format(said._("{signals} matched", signals=said._(" and ").join(
        words.get(signal, signal) for signal in reasons)))


def match_label(rank: int, match: Match, exact: bool, said: Language) -> str:
    """One line per match: rank, score, archive path (and whether it is the very same file)."""
    same = " — " + said._("*exact match* (byte-identical)") if exact else ""
    if match.posted is not None:
        label = f"*{rank}.* `{match.score:.3f}` {shown(shown_name(match))} — {posted_note(match.posted, said)}"
        return label + same + reasons_note(match, said)
    label = f"*{rank}.* `{match.score:.3f}` {shown(match.relative_path)}" + same
    if match.taken:
        label += f" · {match.taken[:10]}"
    if match.also_at:
        label += " · " + said._("also at {places}", places=_places(match.also_at, said))
    if match.near_copies:
        label += " · " + said._("near copies at {places}", places=_places(match.near_copies, said))
    return label + reasons_note(match, said)


def _places(paths: Sequence[str], said: Language) -> str:
    """The first two paths, and how many more."""
    places = ", ".join(shown(path) for path in paths[:2])
    if len(paths) > 2:
        places = said.ngettext("{places} and {count} more", "{places} and {count} more", len(paths) - 2,
                               places=places)
    return places


def duplicates_text(groups: Sequence[Group], folder: str | None, most: int, said: Language) -> str:
    """`/findimage duplicates`: the space the extra copies take, and the groups whose copies take the most
    (at most `most`), each member by its path and size."""
    if not groups:
        if folder:
            return said._("No near-identical images in the archive under {folder}.", folder=shown(folder))
        return said._("No near-identical images in the archive.")
    extra = sum(g.extra_bytes for g in groups)
    copies = sum(len(g.members) - 1 for g in groups)
    heading = said.ngettext("*{count} group of near-identical images*", "*{count} groups of near-identical images*",
                            len(groups))
    where = said._("in the archive under {folder}", folder=shown(folder)) if folder else said._("in the archive")
    take = said.ngettext("{count} extra copy takes {size}.", "{count} extra copies take {size}.", copies,
                         size=human_bytes(extra))
    lines = [f"{heading} {where}: {take}"]
    for number, found in enumerate(groups[:most], start=1):
        members = ", ".join(f"{shown(m.relative_path)} ({human_bytes(m.bytes)})" for m in found.members)
        lines.append(f"*{number}.* {members}")
    if len(groups) > most:
        lines.append(said.ngettext("... and {count} more group: `findimage duplicates` lists them all.",
                                   "... and {count} more groups: `findimage duplicates` lists them all.",
                                   len(groups) - most))
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


def file_title(rank: int, match: Match, exact: bool, said: Language) -> str:
    suffix = " (" + said._("exact match") + ")" if exact else ""
    return f"{rank}. {one_line(shown_name(match))} · {match.score:.3f}{suffix}"  # plain_text: one line is enough


def image_block(rank: int, match: Match, exact: bool, url_for: Callable[[str, str], str] | None,
                said: Language) -> dict | None:
    """A match as an image block: a remembered one by reference to its Slack file (never uploaded again),
    an archive one by its signed link (None where there are no links: it is uploaded instead)."""
    if match.posted is not None:
        source: dict = {"slack_file": {"id": match.posted.file_id}}
    elif url_for is not None:
        source = {"image_url": url_for(match.image_id, match.sha256)}
    else:
        return None
    return {"type": "image", **source, "alt_text": one_line(shown_name(match))[:2000],
            "title": {"type": "plain_text", "text": file_title(rank, match, exact, said)[:2000]}}


def answer_text(answer: Answer) -> str:
    lines = [answer.heading]
    if answer.instead is not None:
        return "\n".join(lines + [answer.instead])
    result = answer.result
    if result is None:
        raise ValueError("an answer needs a result or a sentence instead of one")
    said = answer.said
    earlier = next((m.posted for m in result.reposts if m.posted is not None), None)
    if earlier is not None:
        lines.append(repost_note(earlier, said))
    first = result.matches[0] if result.matches else None
    if first is not None and first.image_id in result.near and first.image_id not in result.exact:
        lines.append(already_note(first, said))  # (a byte-identical copy is marked exact match, which says more)
    elif result.uncertain:
        lines.append(uncertain_note(result, said))
    for rank, match in answer.ranked():
        line = match_label(rank, match, match.image_id in result.exact, said)
        if match.image_id in answer.missing:
            line += " _({})_".format(said._("no longer in the archive"))
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
            block = image_block(rank, match, match.image_id in exact, url_for, answer.said)
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
        posted = [image_block(rank, m, m.image_id in answer.exact, None, answer.said) for rank, m in answer.ranked()
                  if m.posted is not None and m.image_id not in answer.missing]
        if actions is None and not posted:
            continue
        if len(answers) > 1:
            blocks.append(mrkdwn_section(answer.heading))
        blocks += [b for b in posted if b is not None]
        if actions is not None:
            blocks.append(actions)
    return blocks

"""Combining rankings: one ranking of every candidate the CLIP, path-word and image-text searches found,
each judged on every signal; identical copies shown once."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from findimage.names import fold, name_words, text_words
from findimage.records import Match
from findimage.stores.text import query


@dataclass(frozen=True)
class Evidence:
    """What a picture's name and text say about a query's words."""

    every: bool = False  # every query word in its name (folders and file name) or in one line of its text
    held: int = 0  # how many of the query's words its name and text hold
    in_name: bool = False  # its name holds at least one
    line: int | None = None  # the line of its text holding the most query words, the first of equals


NONE = Evidence()


def evidence(match: Match, words: Sequence[str]) -> Evidence:
    """The evidence of `match` (its path; its text's lines where the store gave them) for the query words
    `words` as findimage.stores.text.query folds them."""
    if not words:
        return NONE
    wanted = set(words)
    in_name = wanted.intersection(name_words(match.relative_path).split()) if _mentions(match.relative_path, words) \
        else set()
    in_text: set[str] = set()
    best, most = None, 0
    lines = match.text_lines
    if lines and _mentions("\n".join(lines), words):
        for number, line in enumerate(lines):
            held = wanted.intersection(text_words(line))
            in_text |= held
            if len(held) > most:
                best, most = number, len(held)
    if not in_name and not in_text:
        return NONE
    return Evidence(len(in_name) == len(wanted) or most == len(wanted), len(in_name | in_text), bool(in_name), best)


def _mentions(text: str, words: Iterable[str]) -> bool:
    """Whether any of the (folded) words stands somewhere in `text`, folded: a word cut from a text is part
    of it folded, so most candidates are ruled out without cutting their text into words."""
    folded = fold(text)
    return any(word in folded for word in words)


def fuse(by_image: Sequence[Match], by_name: Sequence[Match] = (), by_text: Sequence[Match] = (),
         words: Sequence[str] = ()) -> list[Match]:
    """Every candidate of the three rankings (CLIP's, the path words', the image text's) in one ranking,
    each judged on every signal: its CLIP score (`score`, which every store gives each candidate), its
    name's words, and its text's lines (`text_lines`, given by the stores for every candidate when the
    text is searched).

    A picture whose name, or one line of whose text, holds every query word ranks above one that holds
    fewer; those holding some rank by how many; CLIP decides among equal evidence (ties in the rankings'
    order). A candidate of the word rankings holding none of the words is left out; a query that no name
    or text matches is therefore CLIP's ranking itself. Each match is marked with what found it (`image`:
    CLIP's candidates; `name`, `text`: the words it holds) and, with text evidence, the line that matched
    best as `text_snippet`."""
    wanted = query(words)
    seen: dict[str, tuple[Match, bool]] = {}
    for ranking, from_clip in ((by_image, True), (by_name, False), (by_text, False)):
        for match in ranking:
            if match.image_id in seen:
                first, clip = seen[match.image_id]
                if not first.text_lines and match.text_lines:  # the text ranking gives every match's lines
                    seen[match.image_id] = (dataclasses.replace(first, text_lines=match.text_lines), clip)
            else:
                seen[match.image_id] = (match, from_clip)
    judged = []
    for order, (match, from_clip) in enumerate(seen.values()):
        found = evidence(match, wanted)
        if found is NONE and not from_clip:
            continue
        judged.append((found, order, match, from_clip))
    judged.sort(key=lambda item: (not item[0].every, -item[0].held, -item[2].score, item[1]))
    return [_marked(match, found, from_clip) for found, _, match, from_clip in judged]


def _marked(match: Match, found: Evidence, from_clip: bool) -> Match:
    """The match marked with what found it and the line of text that matched. Most are CLIP's candidates
    holding none of the words, marked so already: kept as they are (a copy costs ~3 us, and a text query
    ranks up to 150)."""
    matched = (*(("image",) if from_clip else ()), *(("name",) if found.in_name else ()),
               *(("text",) if found.line is not None else ()))
    snippet = match.text_lines[found.line] if found.line is not None else None
    if match.matched == matched and match.text_snippet == snippet:
        return match
    return _copy_with(match, matched=matched, text_snippet=snippet)


def _copy_with(match: Match, **changes: object) -> Match:
    """`dataclasses.replace` for the two fields the fusion sets, at a seventh of its cost (3 us against 23:
    it runs the frozen dataclass's __init__, one object.__setattr__ per field, and a text query marks ~50
    candidates). Match validates nothing on creation, so copying its fields is the same."""
    copy = object.__new__(Match)
    copy.__dict__.update(match.__dict__, **changes)
    return copy


def collapse_copies(matches: Sequence[Match]) -> list[Match]:
    """Byte-identical files (same sha256) as one result at the best-ranked path, the others in `also_at`:
    k results are k different pictures."""
    kept: list[Match] = []
    # An archive file and a picture posted in Slack stay apart: one is shown from the archive, the other
    # by reference to Slack's file, and neither's place is a path of the other.
    by_sha: dict[tuple[str, bool], int] = {}
    for match in matches:
        key = (match.sha256, match.posted is not None)
        where = by_sha.get(key) if match.sha256 else None
        if where is None:
            if match.sha256:
                by_sha[key] = len(kept)
            kept.append(match)
            continue
        best = kept[where]
        signals = tuple(dict.fromkeys(best.matched + match.matched))
        kept[where] = dataclasses.replace(best, matched=signals, text_snippet=best.text_snippet or match.text_snippet,
                                          also_at=best.also_at + (match.relative_path, *match.also_at))
    return kept

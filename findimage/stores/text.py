"""Text read from images as both stores keep it: the search words, the lines' stored form (JSON), and how
a document found by its text is ranked (all query words in one line first) and shown (its snippet)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from findimage.names import text_words
from findimage.records import Match, ReadText, TextLine

STATES = ("read", "failed", "timed_out")
# Readings that are kept for good (until the content changes); a timed-out one leaves its document pending.
DONE = ("read", "failed")


def checked(read: ReadText) -> ReadText:
    """The reading itself, or ValueError for a state no store keeps."""
    if read.state not in STATES:
        raise ValueError(f"a text reading's state is one of {', '.join(STATES)}, not {read.state!r}")
    return read


def line_words(line: str) -> str:
    """One line's search words, space separated (folded as path words are)."""
    return " ".join(text_words(line))


def lines_words(read: ReadText) -> list[str]:
    """Each line's search words (lines without any left out): what Elasticsearch's text_words holds, one
    value per line, so a query can ask for every word in one line."""
    return [w for w in (line_words(line.text) for line in read.lines) if w]


def search_words(read: ReadText) -> str:
    """Every line's search words, space separated: what the embedded full-text index holds for a document."""
    return " ".join(lines_words(read))


def lines_json(lines: Iterable[TextLine]) -> list[dict[str, Any]]:
    return [{"text": line.text, "box": [[int(x), int(y)] for x, y in line.box],
             "confidence": float(line.confidence)} for line in lines]


def from_json(state: str, reason: str, lines: Sequence[dict[str, Any]] | None, attempts: int | None = None) -> ReadText:
    """A stored reading; one stored before attempts were counted was one attempt."""
    return ReadText(state, tuple(TextLine(str(line["text"]), tuple((int(x), int(y)) for x, y in line["box"]),
                                          float(line["confidence"])) for line in lines or ()), reason or "",
                    int(attempts or 1))


def query(words: Sequence[str]) -> list[str]:
    """The distinct query words folded and cut as text words are ("Überblick" -> "uberblick")."""
    return list(dict.fromkeys(w for word in words for w in text_words(word)))


def best_line(lines: Sequence[str], words: Sequence[str]) -> tuple[int | None, bool]:
    """(the line holding the most of the query words, the first of equals, or None if none holds any;
    whether one line holds them all)."""
    wanted = set(words)
    best, most = None, 0
    for number, line in enumerate(lines):
        held = len(wanted.intersection(text_words(line)))
        if held > most:
            best, most = number, held
    return best, bool(wanted) and most == len(wanted)


def one_line_first(found: Iterable[tuple[Match, Sequence[str]]], words: Sequence[str], k: int) -> list[Match]:
    """Matches in BM25 order with their lines as read: those with every query word in one line first (the
    order kept otherwise), the k first, each marked as found by text with its snippet and carrying its lines."""
    wanted = query(words)
    ranked = []
    for match, lines in found:
        number, in_one_line = best_line(lines, wanted)
        ranked.append((not in_one_line, dataclasses.replace(
            match, matched=("text",), text_snippet=lines[number] if number is not None else None,
            text_lines=tuple(lines))))
    ranked.sort(key=lambda pair: pair[0])  # stable: BM25 order within each group
    return [match for _, match in ranked[:k]]


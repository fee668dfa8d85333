"""Combining rankings: reciprocal rank fusion of the CLIP, the path-word and the image-text rankings, and
identical copies shown once."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from findimage.records import Match

RRF_K = 60  # the constant of Cormack et al.: a lower rank adds little, so neither ranking dominates


def fuse(by_image: Sequence[Match], by_name: Sequence[Match], by_text: Sequence[Match] = (),
         k: int = RRF_K) -> list[Match]:
    """Matches ordered by sum(1 / (k + rank)) over the rankings that found them, each marked with those
    rankings (and, if the text ranking found it, the line of text that matched). Without name and text
    matches this is the CLIP ranking itself; ties keep the CLIP order first."""
    fused: dict[str, float] = {}
    first: dict[str, Match] = {}
    signals: dict[str, list[str]] = {}
    snippets: dict[str, str] = {}
    for signal, ranking in (("image", by_image), ("name", by_name), ("text", by_text)):
        for rank, match in enumerate(ranking, 1):
            fused[match.image_id] = fused.get(match.image_id, 0.0) + 1.0 / (k + rank)
            first.setdefault(match.image_id, match)
            signals.setdefault(match.image_id, []).append(signal)
            if match.text_snippet:
                snippets.setdefault(match.image_id, match.text_snippet)
    order = sorted(fused, key=lambda image_id: -fused[image_id])  # stable: equal sums keep insertion order
    return [_marked(first[i], tuple(signals[i]), snippets.get(i)) for i in order]


def _marked(match: Match, matched: tuple[str, ...], snippet: str | None) -> Match:
    """The match with these signals and snippet. Most come from one ranking marked so already (CLIP's, the
    text's): kept as they are, where a copy costs ~3 us each and a text query fuses up to 150."""
    if match.matched == matched and match.text_snippet == snippet:
        return match
    return dataclasses.replace(match, matched=matched, text_snippet=snippet)


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

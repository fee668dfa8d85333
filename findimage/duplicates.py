"""Near-identical copies as people meet them, on any store: a lookup's candidates confirmed as the same
picture, the duplicates report (`findimage duplicates`, `/findimage duplicates`), and an answer's copies
shown as one hit. What counts as the same picture is findimage.fingerprint's decision; the stores only
keep the fingerprints and find candidates by their keys.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from findimage.fingerprint import SAME_THRESHOLD, Fingerprint, distance, fingerprint, group, same_picture
from findimage.query import EVERYWHERE, Filters
from findimage.records import FileState, Match

SAME = 1.0  # the score of a near copy found by its fingerprint: the same picture


def picture_fingerprint(decoded: Image.Image, shrunk: Image.Image) -> Fingerprint:
    """The fingerprint of a decoded picture (EXIF orientation applied), made from the copy shrunk for the
    model (224 px: all it needs, and cheap) where that copy kept the picture's shape; a model that squashes
    pictures to a square does not keep it, and then the decoded picture is read. So the indexer, the
    remembered images, the posted pictures and the upgrade of an older index (no model) agree."""
    kept = abs(math.log((shrunk.width / shrunk.height) / (decoded.width / decoded.height))) < 0.02
    return fingerprint(shrunk if kept else decoded)


def confirmed(fingerprint: Fingerprint, candidates: Iterable[tuple[FileState, str, str | None, str]],
              filters: Filters = EVERYWHERE) -> list[Match]:
    """The candidates (file state, image name, date, fingerprint string) a store found by the probes that
    are the same picture as `fingerprint` and that `filters` allows, the closest first (ties by path)."""
    found = []
    for state, name, taken, text in candidates:
        if not allowed(state.relative_path, taken, filters):
            continue
        apart = distance(fingerprint, Fingerprint.from_string(text), enough=SAME_THRESHOLD)
        if apart <= SAME_THRESHOLD:
            found.append((apart, state.relative_path, Match(
                state.image_id, name, state.relative_path, SAME, state.sha256, taken, state.taken_source,
                size=state.size, mtime=state.mtime, fingerprint=text)))
    return [match for _, _, match in sorted(found, key=lambda item: item[:2])]


def allowed(relative_path: str, taken: str | None, filters: Filters) -> bool:
    """Whether a document is among those `filters` lets a search return (as the stores' own filters)."""
    if filters.folder is not None and not relative_path.startswith(filters.folder + "/"):
        return False
    if filters.after is not None and (taken is None or taken < filters.after):
        return False
    return filters.before is None or (taken is not None and taken < filters.before)


class Fingerprints(Protocol):
    """What the report reads of a store (findimage.stores.base.Store has it)."""

    def fingerprints(self, folder: str | None = None) -> list[tuple[FileState, str]]: ...


@dataclass(frozen=True)
class Copy:
    relative_path: str
    bytes: int

    def as_json(self) -> dict:
        return {"relative_path": self.relative_path, "bytes": self.bytes}


@dataclass(frozen=True)
class Group:
    """Near-identical files: the largest first (the one a person would keep), then by path."""

    members: tuple[Copy, ...]

    @property
    def extra_bytes(self) -> int:
        """The space the copies beyond the first take."""
        return sum(member.bytes for member in self.members[1:])

    def as_json(self) -> dict:
        return {"members": [member.as_json() for member in self.members]}


def duplicate_groups(store: Fingerprints, folder: str | None = None) -> list[Group]:
    """Every group of near-identical images (under `folder`), those whose copies take the most space first."""
    items = [(state, Fingerprint.from_string(text)) for state, text in store.fingerprints(folder)]
    groups = []
    for members in group((i, fp) for i, (_, fp) in enumerate(items)):
        copies = sorted((Copy(items[i][0].relative_path, items[i][0].size) for i in members),
                        key=lambda c: (-c.bytes, c.relative_path))
        groups.append(Group(tuple(copies)))
    return sorted(groups, key=lambda g: (-g.extra_bytes, g.members[0].relative_path))


def summary_lines(groups: Sequence[Group], folder: str | None = None, most: int | None = None) -> list[str]:
    """The report as lines: a heading with the space the copies take, each group (at most `most`) with its
    members and sizes."""
    where = f" under {folder}" if folder else ""
    if not groups:
        return [f"No near-identical images{where}."]
    extra = sum(g.extra_bytes for g in groups)
    copies = sum(len(g.members) - 1 for g in groups)
    lines = [f"{counted(len(groups), 'group', 'groups')} of near-identical images{where}: "
             f"{counted(copies, 'extra copy takes', 'extra copies take')} {human_bytes(extra)}."]
    for number, found in enumerate(groups[:most] if most else groups, start=1):
        lines.append(f"{number}. {len(found.members)} copies, {human_bytes(found.extra_bytes)} extra:")
        lines += [f"   {member.relative_path} ({human_bytes(member.bytes)})" for member in found.members]
    if most and len(groups) > most:
        lines.append(f"... and {counted(len(groups) - most, 'more group', 'more groups')} (`findimage duplicates` "
                     "lists them all).")
    return lines


def counted(count: int, one: str, many: str) -> str:
    """'1 group', '2 groups': the command line's English (Slack's answers have their catalogue's plurals)."""
    return f"{count:,} {one if count == 1 else many}"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"  # pragma: no cover - the loop returns at GB


_Parsed = tuple[Fingerprint, frozenset[int], frozenset[int]]  # a fingerprint, its keys, its probes


class NearCopies:
    """Ranked matches kept one by one, each compared with those kept before it and the copies merged into
    them: whether it is the same picture as one of them (findimage.fingerprint.same_picture, asked only for
    pairs whose keys meet a probe of the other). Only archive images are compared: a picture posted in
    Slack is a message of its own (findimage.fusion.collapse_copies keeps the two apart too)."""

    def __init__(self, fingerprints: dict[str, str]):
        """`fingerprints`: the matches' fingerprint strings by image id (those without one are never copies)."""
        self._fingerprints = fingerprints
        self._kept: list[list[_Parsed]] = []  # per place: the fingerprints of the picture and its copies
        self._parsed_by_id: dict[str, _Parsed | None] = {}

    def _parsed(self, match: Match) -> _Parsed | None:
        if match.image_id not in self._parsed_by_id:
            text = self._fingerprints.get(match.image_id) if match.posted is None else None
            fp = Fingerprint.from_string(text) if text else None
            self._parsed_by_id[match.image_id] = (fp, frozenset(fp.keys()), frozenset(fp.probes())) if fp else None
        return self._parsed_by_id[match.image_id]

    def copy_of(self, match: Match) -> int | None:
        """The place among those kept of the picture `match` is a near copy of (of it or of a copy merged
        into it: a copy of a copy), if any."""
        mine = self._parsed(match)
        if mine is None:
            return None
        fp, keys, probes = mine
        for at, members in enumerate(self._kept):
            for theirs in members:
                if (keys & theirs[2] or probes & theirs[1]) and same_picture(theirs[0], fp):
                    return at
        return None

    def keep(self, match: Match) -> None:
        """`match` kept as a picture of its own (the next place)."""
        mine = self._parsed(match)
        self._kept.append([mine] if mine is not None else [])

    def merge(self, at: int, match: Match) -> None:
        """`match` shown as a near copy of the picture kept at `at`: compared with later ones too."""
        mine = self._parsed(match)
        if mine is not None:
            self._kept[at].append(mine)


def with_near_copy(best: Match, copy: Match) -> Match:
    """`best` with `copy`'s path (and those of its own copies) among its near copies."""
    return dataclasses.replace(best, near_copies=(*best.near_copies, copy.relative_path, *copy.also_at,
                                                  *copy.near_copies))

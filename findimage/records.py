"""Typed records shared by stores, the indexer, the CLI and the bot."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from findimage.archive_files import Indexed

DIMS = 512


def image_id_for(relative_path: str) -> str:
    """Stable id per archive path, so re-indexing the same file updates the same document."""
    return hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:24]


def cosine_to_score(cosine: float) -> float:
    """Elasticsearch's cosine similarity score, (1 + cos) / 2, so both stores rank and print alike."""
    return (1.0 + float(cosine)) / 2.0


@dataclass
class ImageDoc:
    """One archive image as stored: the blog post's Elasticsearch document plus what incremental indexing needs."""

    image_id: str
    image_name: str
    relative_path: str
    image_embedding: np.ndarray
    sha256: str
    size: int
    mtime: float
    width: int
    height: int
    indexed_at: float
    model_id: str
    taken: str | None = None  # naive local ISO 8601 (see findimage.dates)
    taken_source: str = ""  # exif_original, exif_digitized, exif_datetime or mtime; "" before dates were kept
    # findimage.fingerprint's string of the picture (near-identical copies); "" where none was made yet (a
    # document indexed before fingerprints were kept: the next pass adds it without embedding again)
    fingerprint: str = ""

    @property
    def indexed(self) -> Indexed:
        return Indexed(self.size, self.mtime)


@dataclass(frozen=True)
class FileState:
    """What the indexer compares against the archive to decide what changed."""

    image_id: str
    relative_path: str
    sha256: str
    size: int
    mtime: float
    model_id: str
    taken_source: str = ""  # "": indexed before dates were kept, upgraded by the next pass


@dataclass(frozen=True)
class TextLine:
    """One line of text read from an image."""

    text: str  # as read, for display
    box: tuple[tuple[int, int], ...]  # its 4 corners in the original image's pixels
    confidence: float  # 0..1


@dataclass(frozen=True)
class ReadText:
    """What reading an image's text gave: state "read" (lines, maybe none), "failed" (reason; not read again
    until the file changes) or "timed_out" (reason; read again on a later pass, a bounded number of times:
    indexer.text_stage)."""

    state: str  # "read" | "failed" | "timed_out"
    lines: tuple[TextLine, ...] = ()
    reason: str = ""
    attempts: int = 1  # readings of this content so far: the ones that timed out and this one


@dataclass(frozen=True)
class Posted:
    """An image remembered from a Slack channel: where it was posted, by whom, and how to show it (by
    reference to its Slack file; the image itself is not kept)."""

    channel: str  # the only channel whose queries may return it
    file_id: str
    message_ts: str  # the message's time, also the image's date
    poster: str  # user id
    permalink: str = ""
    title: str = ""

    @property
    def image_id(self) -> str:
        return image_id_for(posted_path(self.channel, self.file_id))


def posted_path(channel: str, file_id: str, name: str = "") -> str:
    """A remembered image's path in the channels' store: its channel is the top folder (so every search
    filters by it inside the store) and its file id the next, so each posting is a document of its own."""
    return f"{channel}/{file_id}" + (f"/{name}" if name else "")


@dataclass(frozen=True)
class Match:
    image_id: str
    image_name: str
    relative_path: str
    score: float  # the image similarity (CLIP cosine on Elasticsearch's scale), also for matches found by name
    sha256: str = ""
    taken: str | None = None
    taken_source: str = ""
    matched: tuple[str, ...] = ("image",)  # which rankings found it: "image" (CLIP), "name" (path words), "text"
    also_at: tuple[str, ...] = ()  # other paths of byte-identical copies
    near_copies: tuple[str, ...] = ()  # paths of near-identical copies (findimage.fingerprint), shown as one
    size: int | None = None  # of the file as indexed: a file changed since is not the one that matched
    mtime: float | None = None
    text_snippet: str | None = None  # found by its text: the line holding most query words, as read
    # The lines of text read from the image, as read: what a text query's ranking judges (findimage.fusion),
    # given by the stores for every candidate of a query that searches text; empty otherwise.
    text_lines: tuple[str, ...] = ()
    posted: Posted | None = None  # remembered from a Slack channel, not an archive file
    # The picture's fingerprint (findimage.fingerprint's string) where the store gave it with the match ("": none
    # kept yet), so that collapsing near copies asks nothing more; None: not given (the searcher asks the store).
    fingerprint: str | None = None

    @property
    def indexed(self) -> Indexed | None:
        return Indexed(self.size, self.mtime) if self.size is not None and self.mtime is not None else None

    def as_json(self) -> dict:
        return {
            "image_id": self.image_id,
            "image_name": self.image_name,
            "relative_path": self.relative_path,
            "score": round(self.score, 6),
            "matched": list(self.matched),
            "also_at": list(self.also_at),
            "near_copies": list(self.near_copies),
            "taken": self.taken,
            "taken_source": self.taken_source or None,
            "text_snippet": self.text_snippet,
            **({"posted": dataclasses.asdict(self.posted)} if self.posted else {}),
        }

"""The store interface both backends implement (the factory that picks one is findimage.backends)."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from findimage.fingerprint import Fingerprint
from findimage.query import EVERYWHERE, Filters
from findimage.records import FileState, ImageDoc, Match, Posted, ReadText

# Keys of the small key/value metadata every store keeps.
META_IMAGE_MODEL = "image_model_id"
META_TEXT_MODEL = "text_model_id"
META_LAST_PASS = "last_pass"
# How long the bot remembers what it answered (seen keys): Slack retries within about five minutes.
SEEN_TTL_SECONDS = 3600.0


def candidates_for(k: int, asked: int | None = None) -> int:
    """How many kNN candidates a search for k images looks among: as many as asked (never fewer than k),
    else as many as Elasticsearch users typically ask for (10 x k, at least 100). Every search decides it here."""
    return max(k, asked) if asked else max(10 * k, 100)


class Store(Protocol):
    description: str

    def upsert(self, docs: Sequence[ImageDoc]) -> None: ...

    def delete(self, image_ids: Iterable[str]) -> None: ...

    def get(self, image_id: str) -> ImageDoc | None: ...

    def count(self) -> int: ...

    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            filters: Filters = EVERYWHERE) -> list[Match]:
        """The k nearest images among those `filters` allows."""

    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match]]:
        """(CLIP ranking, path-word BM25 ranking), each of at most k, under the same filters; matches
        found by name carry their CLIP score too, marked as found by name (matched=("name",));
        findimage.fusion judges every candidate on both."""

    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int,
                     filters: Filters = EVERYWHERE) -> list[Match]:
        """At most k documents whose text read from the image holds any of the query words (folded as
        text words are), under the same filters as `knn`: those with every word in one line first, then
        by BM25. Each carries its CLIP score for `vector`, matched=("text",), and as `text_snippet` the
        line (as read) holding the most query words, the first of equals, and its lines as `text_lines`."""

    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match], list[Match]]:
        """`hybrid`'s two rankings and at most k candidates of the text search (those with every query word
        in one line first; beyond that the store's cheapest order), marked as found by text, on
        Elasticsearch in one request. Every match carries the lines of its text as read (`text_lines`,
        empty where none was read), so findimage.fusion judges each candidate on its name, its text and its
        CLIP score (and picks the snippets)."""

    def set_texts(self, items: Sequence[tuple[str, str, ReadText]]) -> None:
        """(image_id, sha256 the text was read from, reading): each replaces the document's text. A reading
        of content the document no longer holds (or of a document gone) is not kept. A document upserted
        with other content loses its text; upserted with the same content keeps it."""

    def texts_by_sha256(self, sha256s: Iterable[str]) -> dict[str, ReadText]:
        """Stored readings by content, so copies and moved files are not read again (during a rebuild:
        those of the live index); of a content's readings, one kept for good before one that timed out."""

    def text_pending(self, limit: int) -> list[FileState]:
        """At most `limit` documents without a reading of their current content, or whose reading timed out
        (read again on a later pass), by path (during a rebuild: those of the index being written)."""

    def text_status(self) -> tuple[int, int]:
        """(documents with a reading, read or failed, of their current content; all documents)."""

    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) for documents indexed before dates and path
        words were kept; vectors stay untouched."""

    def file_states(self) -> dict[str, FileState]:
        """Every document's file state, keyed by relative path."""

    def set_fingerprints(self, items: Sequence[tuple[str, str, str]]) -> None:
        """(image_id, sha256 the picture was read from, findimage.fingerprint string) of documents indexed
        before fingerprints were kept; kept only while the document holds that content, vectors untouched.
        A document holds the fingerprint it was last upserted with (`ImageDoc.fingerprint`; none: it has
        none until this adds one)."""

    def fingerprint_pending(self) -> list[FileState]:
        """Every document without a fingerprint of its current content, by path (the indexer adds them)."""

    def near_copies(self, fingerprint: Fingerprint, filters: Filters = EVERYWHERE) -> list[Match]:
        """The documents `filters` allows that are the same picture as `fingerprint` (found by its probes,
        confirmed by findimage.fingerprint.same_picture), the closest first, each with score 1.0."""

    def fingerprints(self, folder: str | None = None) -> list[tuple[FileState, str]]:
        """Every fingerprinted document (under `folder`) and its fingerprint string, by path (the duplicates
        report: findimage.duplicates)."""

    def fingerprints_of(self, image_ids: Iterable[str]) -> dict[str, str]:
        """The fingerprint strings of these documents, by image id (those without one left out)."""

    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        """Stored vectors of files with these contents made by this model, so moved or duplicated files are
        not embedded again."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def begin_rebuild(self) -> None:
        """Start a full rebuild (e.g. after a model change): the following writes form the new index."""

    def finish_rebuild(self) -> None: ...

    def rebuild_target(self) -> str | None:
        """Where the running rebuild's writes go, for writers in other processes (indexing workers); None
        where a rebuild rewrites the documents in place."""

    def write_into(self, target: str | None) -> None:
        """Send this store's writes where another process's rebuild writes (its `rebuild_target`); None: as
        usual. StoreError for a target that is not one of this store's."""

    def checkpoint(self) -> None:
        """Make the work so far durable and fast to open (called after each indexing pass)."""

    def details(self) -> list[tuple[str, str]]:
        """(label, value) lines for `findimage status`, beyond the description and the count."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServerCheckup:
    """What a store's server says of itself and of the credentials in use (`findimage doctor`)."""

    version: str | None  # None: these credentials may not read it
    license: str | None  # its type and status, e.g. "basic, active"; None: not readable with these credentials
    security: bool  # False: the server checks no credentials
    missing: dict[str, list[str]]  # per process ("bot", "indexer"): the privileges it needs that these lack


class SeenKeys(Protocol):
    """What the bot already answered (findimage.backends.seen_keys): in memory, or shared by replicas."""

    def first_time(self, key: str) -> bool:
        """True exactly once per key within the time keys are remembered."""
        ...

    def forget_all(self) -> None:
        """Every key (the app uninstalled: they name Slack's events, channels and files)."""
        ...


class LeaseHolder(Protocol):
    """The indexing pass that holds a lease."""

    @property
    def expires_at(self) -> float:
        """When its lease lapses unless renewed (epoch seconds)."""
        ...

    def describe(self) -> str:
        """Where it runs and since when, to finish "Another indexing pass is running ..."."""
        ...


class PassLease(Protocol):
    """What keeps indexing passes on other machines out of an index the store shares with them
    (findimage.backends.indexing_lease)."""

    @property
    def lost(self) -> threading.Event:
        """Set when another pass took the lease over."""
        ...

    def take(self) -> None:
        """Take it (LeaseHeld while another pass holds it)."""
        ...

    def release(self) -> None: ...

    def holder(self) -> LeaseHolder | None:
        """The pass holding it now, if any; the lease is not taken."""
        ...

    def close(self) -> None: ...


class Backups(Protocol):
    """Backups of everything a store keeps, made while the bot and the indexer run, and their restore
    (findimage.backends.backups): the embedded store's data folder copied into a folder, or Elasticsearch's
    indices in a snapshot."""

    def make(self, target: str | None) -> list[str]:
        """Make a backup named `target` (a folder; a snapshot name, None: a dated one); lines saying what it holds."""
        ...

    def restore(self, source: str, force: bool = False) -> list[str]:
        """Bring back the backup `source`, checked first; lines saying what was restored. Refused (one
        sentence) where it cannot be done safely; `force` replaces a store that holds something."""
        ...


def known_fields(cls: type, value: dict) -> dict:
    """The stored record's fields this version knows (a newer release may have added others)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in value.items() if k in known}


@dataclass
class ChannelState:
    """A channel whose posted images are remembered, and how far the backfill of its history is."""

    channel: str
    by: str  # who turned it on
    since: float  # when (epoch seconds): the backfill reads the messages before it, events the ones after
    oldest: float  # the backfill goes back to this message time
    cursor: str | None = None  # where conversations.history goes on (None: from the start, or done)
    reached: float | None = None  # the oldest message time read so far
    done: bool = False
    pages: int = 0
    messages: int = 0
    images: int = 0
    failed: int = 0
    busy_seconds: float = 0.0  # time spent backfilling (waits included), for the estimate of what is left
    worker: str = ""  # the bot process backfilling it (replicas leave it to that one while its claim holds)
    worker_until: float = 0.0

    def as_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def of_json(cls, value: dict) -> ChannelState:
        return cls(**known_fields(cls, value))


LIFECYCLE = "lifecycle"  # deletions, sharing, archiving, leaving, uninstall: cheap deletes, applied first
REMEMBER = "remember"  # new posts and changed files: image work (download, embed, read text)


@dataclass
class Pending:
    """A Slack event kept in the registry from before Slack got its answer until it has been applied, so a
    full queue or a restart loses nothing (bot.channel_memory). `lane` says which worker applies it."""

    id: str  # the event's id: Slack's re-deliveries of one event are kept once
    lane: str  # LIFECYCLE or REMEMBER
    event: dict  # the event's fields the work needs (never a message's text)
    received: float
    attempts: int = 0  # takes so far: a posting that keeps failing is given up after a few
    worker: str = ""  # the process working on it, until `worker_until` (replicas take different ones)
    worker_until: float = 0.0

    def as_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def of_json(cls, value: dict) -> Pending:
        return cls(**known_fields(cls, value))


class ChannelRegistry(Protocol):
    """The remembered channels and their posted images' Slack facts (findimage.remembered); the vectors
    are in a Store of their own. In SQLite beside the embedded store, or an index shared by replicas."""

    def channel(self, channel: str) -> ChannelState | None: ...

    def channels(self) -> list[ChannelState]: ...

    def save_channel(self, state: ChannelState) -> None: ...

    def update_channel(self, state: ChannelState) -> bool:
        """Save the state only while the channel is remembered (False if it was forgotten meanwhile: a
        backfill page finishing after `forget` must not turn it on again)."""
        ...

    def drop_channel(self, channel: str) -> None:
        """The channel's state and every posting of it."""
        ...

    def erase_all(self) -> None:
        """Every channel, posting, kept event and deletion record (the app uninstalled): nothing from
        Slack left, in the files too where the store can see to it (stores/embedded/erasing.py)."""
        ...

    def add_posted(self, posted: Sequence[Posted]) -> None: ...

    def posted(self, image_ids: Iterable[str]) -> dict[str, Posted]:
        """The postings among these ids, by image id."""
        ...

    def posted_in(self, channel: str) -> list[Posted]: ...

    def posted_as(self, file_id: str) -> list[Posted]:
        """Every remembered posting of this Slack file (one per channel it was remembered in)."""
        ...

    def drop_posted(self, image_ids: Iterable[str]) -> None: ...

    def keep(self, entries: Sequence[Pending]) -> None:
        """Durable when it returns (the caller answers Slack only then); an id kept before is kept once."""
        ...

    def take(self, lane: str, limit: int, worker: str, now: float, hold_seconds: float) -> list[Pending]:
        """At most `limit` of the lane's entries, oldest first, that no other worker holds (its hold lapsed,
        or it is `worker`'s own: the same host after a restart), now held by `worker` until now +
        hold_seconds; their `attempts` counted up."""
        ...

    def settle(self, ids: Iterable[str]) -> None:
        """Applied (or given up): gone from the journal."""
        ...

    def backlog(self) -> dict[str, int]:
        """Entries waiting, by lane."""
        ...

    def mark_gone(self, file_ids: Iterable[str], now: float, keep_seconds: float) -> None:
        """Slack files deleted: a posting of them still waiting to be remembered is not remembered (for
        `keep_seconds`, after which the record lapses; lapsed ones are pruned)."""
        ...

    def gone(self, file_ids: Iterable[str], now: float) -> set[str]:
        """Those of these files recorded as deleted (and not lapsed by `now`)."""
        ...

    def close(self) -> None: ...

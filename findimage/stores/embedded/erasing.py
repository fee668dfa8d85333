"""Deleted means gone from the files too, where a store holds what people may ask to have forgotten (the
images remembered from Slack channels and their registry: findimage.backends.open_remembered). The
archive's store deletes the ordinary way: its files are the archive's mirror, not anyone's messages.

A deleted row leaves its bytes in four places; each is dealt with here, the cheapest way that leaves
nothing (measured by benchmarks/forget.py: docs/performance.md#forgetting):

- The database pages it was on, and the pages the deletion freed: `PRAGMA secure_delete=ON` overwrites
  them with zeros as they are freed, for a few page writes per deletion. Debian's SQLite (the image's)
  has it on by default, others do not: it is set on every connection that deletes. `VACUUM` would also
  rewrite the freed pages, but it copies the whole file under an exclusive lock on every deletion.
- FTS5's full-text index (path words, text read from images): deleting a row appends a delete marker
  that holds the row's words, and the words stay in the older segments until one merge covers them all.
  FTS5's `secure-delete` option removes them in place, but needs SQLite 3.44 (Debian bookworm's Python,
  the image's base, links 3.40); the 'optimize' command merges every segment into one without the deleted
  rows, in the deleting transaction. It rewrites the whole full-text index, so a file's forget costs
  40 ms at 3,000 remembered images with their text and 0.1 s at 10,000, a channel's no more than before.
- The write-ahead log: it keeps copies of pages as they were written (the rows when they were added)
  until a checkpoint has copied it into the database and a later write wraps around. A TRUNCATE
  checkpoint after the deletion copies the zeroed pages in and empties it at once.
- The kNN snapshot (vector_index): every vector as of its save. It is deleted, not rewritten (a rewrite
  costs the whole index on every deletion); the next process rebuilds the kNN index from SQLite, as
  it does for a store without one.
"""
from __future__ import annotations

import logging
import sqlite3

from findimage.stores.embedded.schema import NAME_INDEXES, TEXT_INDEXES, merge_segments

log = logging.getLogger(__name__)


def zero_deleted_content(db: sqlite3.Connection) -> None:
    """Deleted rows and freed pages overwritten with zeros, on this connection."""
    db.execute("PRAGMA secure_delete=ON")


def merge_out_deleted_words(db: sqlite3.Connection, with_text: bool) -> None:
    """The path words' full-text index, and the read text's where rows of it were deleted (`with_text`),
    merged into one segment each, which leaves out the deleted rows' words and their delete markers
    (inside the caller's transaction; with secure_delete the old segments' pages are zeroed). The text
    indexes are the larger ones: a deletion of images without text leaves them as they are."""
    merge_segments(db, NAME_INDEXES + (TEXT_INDEXES if with_text else ()))


def empty_wal(db: sqlite3.Connection, where: str) -> None:
    """The write-ahead log copied into the database and truncated, so no page as it was before a
    deletion stays in it. A reader of another process in the middle of a read is waited for (the
    connection's busy timeout); if it is still reading then, the log goes at the next deletion."""
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("the write-ahead log of %s still holds deleted rows (a reader was busy); they go at the "
                    "next deletion or when the last process closes it", where)

"""The embedded store's text read from images (the tables are schema.TEXT_TABLES): writes inside the
caller's transaction, and reads (the searches by text are search.py's).

A reading belongs to a slot and to the content (sha256) it was read from: it is stored only for a
document that still holds that content, and goes when the document is deleted or re-upserted with other
content, in the same transaction.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from findimage.records import FileState, ReadText
from findimage.stores.embedded.schema import LINE_SLOTS, in_chunks
from findimage.stores.text import DONE, checked, from_json, line_words, lines_json, search_words


def write_texts(db: sqlite3.Connection, items: Sequence[tuple[str, str, ReadText]]) -> None:
    """(image_id, sha256 read from, reading): each replaces what its document held; a reading of content
    the document no longer holds (or of a document gone) is not kept."""
    for image_id, sha256, read in items:
        checked(read)
        row = db.execute("SELECT slot, sha256 FROM images WHERE image_id=?", (image_id,)).fetchone()
        if row is None or row[1] != sha256:
            continue
        slot = row[0]
        forget_texts(db, [slot])
        db.execute("INSERT INTO texts(slot, sha256, state, reason, lines, attempts) VALUES(?, ?, ?, ?, ?, ?)",
                   (slot, sha256, read.state, read.reason,
                    json.dumps(lines_json(read.lines), ensure_ascii=False, separators=(",", ":")), read.attempts))
        words = search_words(read)
        if words:
            db.execute("INSERT INTO text_words(rowid, words) VALUES(?, ?)", (slot, words))
        db.executemany("INSERT INTO text_lines(rowid, words) VALUES(?, ?)",
                       [(slot * LINE_SLOTS + number, held) for number, held in
                        enumerate(line_words(line.text) for line in read.lines[:LINE_SLOTS]) if held])


def forget_texts(db: sqlite3.Connection, slots: Iterable[int]) -> None:
    """The readings of these slots, gone (inside the caller's transaction)."""
    chosen = [int(s) for s in slots]
    for chunk in in_chunks(chosen, 500):
        marks = ",".join("?" * len(chunk))
        db.execute(f"DELETE FROM texts WHERE slot IN ({marks})", chunk)
        db.execute(f"DELETE FROM text_words WHERE rowid IN ({marks})", chunk)
    # A rowid range per slot: FTS5 answers it from its index, where a list of rowids is read row by row.
    db.executemany("DELETE FROM text_lines WHERE rowid >= ? AND rowid < ?",
                   [(s * LINE_SLOTS, (s + 1) * LINE_SLOTS) for s in chosen])


def forget_changed_texts(db: sqlite3.Connection, contents: Sequence[tuple[str, str]]) -> None:
    """Before (image_id, new sha256) rows are written: readings of content those documents will no
    longer hold go (the same content keeps its reading)."""
    stale = []
    for chunk in in_chunks(list(contents), 500):
        new = dict(chunk)
        rows = db.execute(f"SELECT images.image_id, texts.slot, texts.sha256 FROM images JOIN texts ON "
                          f"texts.slot = images.slot WHERE images.image_id IN ({','.join('?' * len(chunk))})",
                          list(new)).fetchall()
        stale += [slot for image_id, slot, sha in rows if new[image_id] != sha]
    if stale:
        forget_texts(db, stale)


def forget_texts_of(db: sqlite3.Connection, marks: str, ids: Sequence[str]) -> bool:
    """The readings of the documents with these ids (before they are deleted); whether there were any."""
    slots = [r[0] for r in db.execute(f"SELECT texts.slot FROM texts JOIN images ON images.slot = texts.slot "
                                      f"WHERE images.image_id IN ({marks})", ids)]
    if slots:
        forget_texts(db, slots)
    return bool(slots)


_DONE = ",".join(f"'{state}'" for state in DONE)  # SQL's list of the states kept for good


def texts_by_sha256(db: sqlite3.Connection, sha256s: Iterable[str]) -> dict[str, ReadText]:
    """A content's reading kept for good over one that timed out (copies read at different times)."""
    found: dict[str, ReadText] = {}
    for chunk in in_chunks(sorted(set(sha256s)), 500):
        rows = db.execute(f"SELECT sha256, state, reason, lines, attempts FROM texts WHERE sha256 IN "
                          f"({','.join('?' * len(chunk))}) ORDER BY state IN ({_DONE})", chunk).fetchall()
        found.update((sha, from_json(state, reason, json.loads(lines), attempts))
                     for sha, state, reason, lines, attempts in rows)  # the last of a content's rows wins
    return found


# Documents without a reading of their current content (LEFT JOIN: no row, or one for other content), or
# with one that timed out (read again on a later pass).
_PENDING = ("FROM images LEFT JOIN texts ON texts.slot = images.slot "
            f"WHERE texts.slot IS NULL OR texts.sha256 != images.sha256 OR texts.state NOT IN ({_DONE})")


def text_pending(db: sqlite3.Connection, limit: int) -> list[FileState]:
    """At most `limit` of them, by path (the unique index's order)."""
    rows = db.execute("SELECT images.image_id, images.relative_path, images.sha256, images.size, images.mtime, "
                      f"images.model_id, coalesce(images.taken_source, '') {_PENDING} "
                      "ORDER BY images.relative_path LIMIT ?", (max(0, int(limit)),)).fetchall()
    return [FileState(*r) for r in rows]


def text_status(db: sqlite3.Connection) -> tuple[int, int]:
    everything = db.execute("SELECT count(*) FROM images").fetchone()[0]
    pending = db.execute(f"SELECT count(*) {_PENDING}").fetchone()[0]
    return everything - pending, everything


def lines_as_read(stored: str | None) -> tuple[str, ...]:
    """The lines' text of a reading's stored lines (texts.lines; None: no reading)."""
    return tuple(line["text"] for line in json.loads(stored)) if stored else ()

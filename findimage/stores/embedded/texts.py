"""The embedded store's text read from images (the tables are schema.TEXT_TABLES): writes inside the
caller's transaction, reads, and the text ranking's SQL.

A reading belongs to a slot and to the content (sha256) it was read from: it is stored only for a
document that still holds that content, and goes when the document is deleted or re-upserted with other
content, in the same transaction.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from findimage.records import FileState, ReadText
from findimage.stores.embedded.schema import LINE_SLOTS, filter_sql, in_chunks, match_expression
from findimage.stores.text import checked, from_json, line_words, lines_json, search_words


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
        db.execute("INSERT INTO texts(slot, sha256, state, reason, lines) VALUES(?, ?, ?, ?, ?)",
                   (slot, sha256, read.state, read.reason,
                    json.dumps(lines_json(read.lines), ensure_ascii=False, separators=(",", ":"))))
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


def forget_texts_of(db: sqlite3.Connection, marks: str, ids: Sequence[str]) -> None:
    """The readings of the documents with these ids (before they are deleted)."""
    slots = [r[0] for r in db.execute(f"SELECT texts.slot FROM texts JOIN images ON images.slot = texts.slot "
                                      f"WHERE images.image_id IN ({marks})", ids)]
    if slots:
        forget_texts(db, slots)


def texts_by_sha256(db: sqlite3.Connection, sha256s: Iterable[str]) -> dict[str, ReadText]:
    found: dict[str, ReadText] = {}
    for chunk in in_chunks(sorted(set(sha256s)), 500):
        rows = db.execute(f"SELECT sha256, state, reason, lines FROM texts WHERE sha256 IN "
                          f"({','.join('?' * len(chunk))})", chunk).fetchall()
        found.update((sha, from_json(state, reason, json.loads(lines))) for sha, state, reason, lines in rows)
    return found


# Documents without a reading of their current content (LEFT JOIN: no row, or one for other content).
_PENDING = ("FROM images LEFT JOIN texts ON texts.slot = images.slot "
            "WHERE texts.slot IS NULL OR texts.sha256 != images.sha256")


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


def text_ranking(db: sqlite3.Connection, words: Sequence[str], limit: int, folder: str | None,
                 after: str | None, before: str | None) -> list[int]:
    """Slots whose text holds any of the (folded) words within the filters, at most `limit`: those with
    every word in one line first (by that line's BM25), then the others by BM25 (ties by slot)."""
    if not words or limit <= 0:
        return []
    one_line: list[int] = []
    if len(words) > 1:
        lines = _ranked(db, "text_lines", match_expression(words, "AND"), limit * LINE_SLOTS, LINE_SLOTS,
                        folder, after, before)
        one_line = list(dict.fromkeys(lines))[:limit]
    first = set(one_line)
    rest = _ranked(db, "text_words", match_expression(words), limit + len(one_line), 1, folder, after, before)
    return (one_line + [s for s in rest if s not in first])[:limit]


def _ranked(db: sqlite3.Connection, table: str, expression: str, limit: int, per_slot: int,
            folder: str | None, after: str | None, before: str | None) -> list[int]:
    """Slots of the FTS5 `table`'s rows matching `expression`, best BM25 first. Without filters FTS5 orders
    by rank from its own index (~1 ms at 10k texts); a join for the filters only where there are some
    (ordering through a join costs 10-30 ms there)."""
    where, params = filter_sql(folder, after, before)
    if not where:
        rows = db.execute(f"SELECT rowid / {per_slot} FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?",
                          [expression, limit])
    else:
        rows = db.execute(f"SELECT {table}.rowid / {per_slot} FROM {table} JOIN images ON images.slot = "
                          f"{table}.rowid / {per_slot} WHERE {table} MATCH ? AND {where} "
                          f"ORDER BY bm25({table}) LIMIT ?", [expression, *params, limit])
    return [r[0] for r in rows]


def lines_of(db: sqlite3.Connection, slots: Sequence[int]) -> dict[str, list[str]]:
    """The lines as read of these slots' readings, by image id."""
    found: dict[str, list[str]] = {}
    for chunk in in_chunks([int(s) for s in slots], 900):
        rows = db.execute(f"SELECT images.image_id, texts.lines FROM texts JOIN images ON images.slot = texts.slot "
                          f"WHERE texts.slot IN ({','.join('?' * len(chunk))})", chunk)
        found.update((image_id, [line["text"] for line in json.loads(lines)]) for image_id, lines in rows)
    return found

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

from findimage.query import Filters
from findimage.records import FileState, ReadText
from findimage.stores.embedded.schema import LINE_SLOTS, filter_sql, in_chunks, match_expression
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


def text_ranking(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose text holds any of the (folded) words within the filters, at most `limit`: those with
    every word in one line first, each group by the document's BM25 (ties by slot), over every match.

    One ranked query: FTS5 ranks every match before the first row (~1 us each on `text_words`, ~2 on
    `text_lines`), so the one-line test is an unranked match on `text_lines` (~0.3 us a row), used as a set."""
    if not words or limit <= 0:
        return []
    one_line: set[int] = set()
    if len(words) > 1:
        one_line = {r[0] for r in db.execute(f"SELECT rowid / {LINE_SLOTS} FROM text_lines WHERE text_lines MATCH ?",
                                             [match_expression(words, "AND")])}
    first: list[int] = []
    rest: list[int] = []
    # Unfiltered, every one-line slot is among the ranked ones: reading can stop once all of them were.
    all_seen = len(one_line) if not filters.any else None
    rows = _ranked(db, match_expression(words), filters)
    try:
        for (slot,) in rows:
            if slot in one_line:
                first.append(slot)
            elif len(rest) < limit:
                rest.append(slot)
            if len(first) >= limit or (len(first) == all_seen and len(first) + len(rest) >= limit):
                break
    finally:
        rows.close()
    return (first + rest)[:limit]


def text_candidates(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose text holds any of the (folded) words within the filters, at most `limit`, for a text
    query's fusion (findimage.fusion) to judge: those with every word in one line first, then every word
    anywhere, then any, each group in slot order.

    Unranked matches stream (~0.3 us a row) and stop at `limit`; BM25 ranks every match before the first
    row (~1 us each: 3 ms where 3,000 texts hold a word), for an order the fusion does not keep: it ranks
    the candidates by their lines and CLIP."""
    if not words or limit <= 0:
        return []
    where, params = filter_sql(filters)
    groups = [("text_words", words, "OR")]
    if len(words) > 1:
        groups[:0] = [("text_lines", words, "AND"), ("text_words", words, "AND")]
    found: dict[int, None] = {}
    for table, group, operator in groups:
        slot = f"{table}.rowid / {LINE_SLOTS}" if table == "text_lines" else f"{table}.rowid"
        joined = f" JOIN images ON images.slot = {slot} WHERE {table} MATCH ? AND {where}" if where else \
            f" WHERE {table} MATCH ?"
        # Each group holds the ones before: at most `limit` new slots follow the ones found already.
        rows = db.execute(f"SELECT DISTINCT {slot} FROM {table}{joined} LIMIT ?",
                          [match_expression(group, operator), *params, limit + len(found)])
        found.update((row[0], None) for row in rows)
        if len(found) >= limit:
            break
    return list(found)[:limit]


def _ranked(db: sqlite3.Connection, expression: str, filters: Filters) -> sqlite3.Cursor:
    """A cursor over the slots whose text matches `expression`, best BM25 first, ties by slot: read only as
    far as needed (every match is ranked before the first row anyway; fetching them all would add to it).
    A join for the filters only where there are some: ordering through a join costs 10-30 ms at 10k texts."""
    where, params = filter_sql(filters)
    if not where:
        # SQLite's own sort of bm25() here: ~0.2 ms faster at 1,700 matches than FTS5's `ORDER BY rank`.
        return db.execute("SELECT rowid FROM text_words WHERE text_words MATCH ? ORDER BY bm25(text_words), rowid",
                          [expression])
    return db.execute("SELECT text_words.rowid FROM text_words JOIN images ON images.slot = text_words.rowid "
                      f"WHERE text_words MATCH ? AND {where} ORDER BY bm25(text_words), text_words.rowid",
                      [expression, *params])


def lines_as_read(stored: str | None) -> tuple[str, ...]:
    """The lines' text of a reading's stored lines (texts.lines; None: no reading)."""
    return tuple(line["text"] for line in json.loads(stored)) if stored else ()

"""The embedded store's tables beyond the vectors: the path-word (FTS5) table, dates, the tables of text
read from images, filters, migration, and the small SQL helpers the store modules use.

Schema 2 added `taken`/`taken_source` columns and the `names` table. A database made before opens
migrated in one transaction (path words filled from relative_path); its dates stay empty until the next
indexing pass reads them from the files' headers, without embedding anything again.

Schema 3 added the text read from images (`texts`, `text_words`, `text_lines`, see texts.py), created
empty: a database made before opens migrated and lists every document as waiting for its text.

Schema 4 added `texts.attempts` (a reading that timed out is tried again a bounded number of times); a
reading stored before counts as one attempt.

Beside the schema, `meta` records the findimage release that created or last migrated the database
(`findimage_version`; stores made before it was kept get it at their next open). A database of a newer
schema than this release knows is refused at open, in one sentence naming both releases: an older
findimage never writes into what a newer one made.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np

from findimage import __version__
from findimage.errors import refuse_newer_schema
from findimage.names import name_words
from findimage.query import Filters
from findimage.records import DIMS

T = TypeVar("T")

SCHEMA_VERSION = 4
META_SCHEMA = "schema_version"
META_WRITTEN_BY = "findimage_version"

# unicode61 with remove_diacritics 2 folds what findimage.names leaves (it already lowercases and strips
# accents), so words typed into SQLite by hand match too.
NAMES_TABLE = ("CREATE VIRTUAL TABLE IF NOT EXISTS names USING fts5(words, "
               "tokenize='unicode61 remove_diacritics 2')")

# Text read from images, per slot of `images` (slots are never reused): the reading as stored
# (state, reason, lines with boxes and confidences as JSON, attempts) and the content it was read from; every
# line's words in `text_words` (rowid = slot, ranked by BM25); each line's words on their own in
# `text_lines` (rowid = slot * LINE_SLOTS + line number), which answers "all query words in one line".
TEXT_TABLES = (
    "CREATE TABLE IF NOT EXISTS texts (slot INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, state TEXT NOT NULL, "
    "reason TEXT NOT NULL, lines TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1)",
    "CREATE INDEX IF NOT EXISTS texts_sha256 ON texts(sha256)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS text_words USING fts5(words, tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS text_lines USING fts5(words, tokenize='unicode61 remove_diacritics 2', "
    "detail=none)",
)
LINE_SLOTS = 1 << 16  # lines of one image in `text_lines`; any beyond are searched in `text_words` only


def refuse_newer(db: sqlite3.Connection, where: str) -> None:
    """StoreTooNew for a database (in the folder `where`) of a newer schema than this release knows."""
    schema, written_by = written(db)
    refuse_newer_schema(f"The store in {where}", written_by, schema, SCHEMA_VERSION)


def migrate(db: sqlite3.Connection, where: str) -> None:
    """Bring an older database (in the folder `where`) to the current schema in one transaction; several
    processes opening it at once migrate it once. A newer one is refused (StoreTooNew)."""
    schema, written_by = written(db)
    if schema == SCHEMA_VERSION and written_by is not None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        refuse_newer(db, where)
        schema, written_by = written(db)
        if schema < 2:
            _add_names_and_dates(db)
        if schema < SCHEMA_VERSION:
            for statement in TEXT_TABLES:  # kept if there: a database migrated again keeps its texts
                db.execute(statement)
            if "attempts" not in {row[1] for row in db.execute("PRAGMA table_info(texts)")}:  # schema 3
                db.execute("ALTER TABLE texts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
            _set(db, META_SCHEMA, str(SCHEMA_VERSION))
        if schema < SCHEMA_VERSION or written_by is None:
            _set(db, META_WRITTEN_BY, __version__)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _add_names_and_dates(db: sqlite3.Connection) -> None:
    """Schema 2: the date columns and the path words, filled from relative_path."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(images)")}
    for column in ("taken", "taken_source"):
        if column not in columns:
            db.execute(f"ALTER TABLE images ADD COLUMN {column} TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS images_taken ON images(taken)")
    db.execute(NAMES_TABLE)
    db.execute("DELETE FROM names")
    rows = db.execute("SELECT slot, relative_path FROM images").fetchall()
    db.executemany("INSERT INTO names(rowid, words) VALUES(?, ?)",
                   [(slot, name_words(path)) for slot, path in rows])


def written(db: sqlite3.Connection) -> tuple[int, str | None]:
    """The database's schema version (0: made before versions were kept, or not migrated yet) and the
    findimage release that wrote it (None: one from before releases were recorded)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return 0, None  # a new database
    rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (META_SCHEMA, META_WRITTEN_BY)))
    schema = rows.get(META_SCHEMA)
    return (int(schema) if schema and str(schema).isdigit() else 0), rows.get(META_WRITTEN_BY)


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (key, value))


def write_names(db: sqlite3.Connection, paths_by_id: Sequence[tuple[str, str]]) -> None:
    """(image_id, relative_path) rows' words, replacing what their slots held (inside the caller's transaction)."""
    db.executemany("DELETE FROM names WHERE rowid = (SELECT slot FROM images WHERE image_id=?)",
                   [(image_id,) for image_id, _ in paths_by_id])
    db.executemany("INSERT INTO names(rowid, words) SELECT slot, ? FROM images WHERE image_id=?",
                   [(name_words(path), image_id) for image_id, path in paths_by_id])


def forget_names(db: sqlite3.Connection, marks: str, ids: Sequence[str]) -> None:
    db.execute(f"DELETE FROM names WHERE rowid IN (SELECT slot FROM images WHERE image_id IN ({marks}))", ids)


def filter_sql(filters: Filters) -> tuple[str, list]:
    """A WHERE clause (or '') and its parameters for the folder and date filters."""
    clauses: list[str] = []
    params: list[str] = []
    if filters.folder is not None:
        # Paths under "a/b" sort between "a/b/" and "a/b0" ('0' follows '/'), so the unique index serves it.
        clauses.append("images.relative_path >= ? AND images.relative_path < ?")
        params += [filters.folder + "/", filters.folder + "0"]
    if filters.after is not None:
        clauses.append("images.taken >= ?")
        params.append(filters.after)
    if filters.before is not None:
        clauses.append("images.taken < ?")
        params.append(filters.before)
    return (" AND ".join(clauses), params)


def match_expression(words: Sequence[str], operator: str = "OR") -> str:
    """FTS5 query: any (or, with "AND", every one) of the words, each quoted so none is read as an operator."""
    return f" {operator} ".join('"' + w.replace('"', '""') + '"' for w in words)


def words_present(db: sqlite3.Connection, words: Sequence[str]) -> list[str]:
    """Those of the words that some document's path words hold, in query order (one look-up each)."""
    return [w for w in words
            if db.execute("SELECT 1 FROM names WHERE names MATCH ? LIMIT 1", (match_expression([w]),)).fetchone()]


def documents_holding(db: sqlite3.Connection, words: Sequence[str], at_most: int) -> int:
    """How many documents' path words hold any of the words, counted up to `at_most`: FTS5 walks the
    matches (~0.1 us each), so a word that 100k paths hold costs no more than `at_most` of them (its term
    statistics, fts5vocab, walk them all: ~1.5 ms a word at 10k)."""
    if not words:
        return 0
    return db.execute("SELECT count(*) FROM (SELECT 1 FROM names WHERE names MATCH ? LIMIT ?)",
                      (match_expression(words), at_most)).fetchone()[0]


def holds_all(db: sqlite3.Connection, words: Sequence[str]) -> bool:
    """Whether any document's path words hold every one of `words`."""
    return db.execute("SELECT 1 FROM names WHERE names MATCH ? LIMIT 1",
                      (match_expression(words, "AND"),)).fetchone() is not None


def named_among(db: sqlite3.Connection, slots: Sequence[int], words: Sequence[str], every: bool) -> list[int]:
    """Those of `slots` (in their order) whose path words hold every word (or any, if not `every`)."""
    wanted = set(words)
    held: dict[int, str] = {}
    for chunk in in_chunks([int(s) for s in slots], 900):
        # names_content is FTS5's own table of the indexed text (id = rowid = slot, c0 = words): a plain
        # primary-key lookup, where a rowid list on the FTS table itself is answered row by row.
        held.update(db.execute(f"SELECT id, c0 FROM names_content WHERE id IN ({','.join('?' * len(chunk))})",
                               chunk).fetchall())
    test = wanted.issubset if every else wanted.intersection
    return [s for s in slots if s in held and test(held[s].split())]


def name_ranking(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose path words match, best BM25 first, within the filters."""
    if not words:
        return []
    where, params = filter_sql(filters)
    if not where:  # FTS5 alone ranks without touching the images table
        rows = db.execute("SELECT rowid FROM names WHERE names MATCH ? ORDER BY rank LIMIT ?",
                          (match_expression(words), limit)).fetchall()
    else:
        rows = db.execute(
            "SELECT names.rowid FROM names JOIN images ON images.slot = names.rowid WHERE names MATCH ? "
            f"AND {where} ORDER BY names.rank LIMIT ?", [match_expression(words), *params, limit]).fetchall()
    return [r[0] for r in rows]


def vectors_of(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.empty((0, DIMS), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, DIMS)


def in_chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

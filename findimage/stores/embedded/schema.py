"""The embedded store's databases as this release makes them: how a file is opened, every table, the
schema version and the form of what the columns hold. How a database of an earlier schema becomes this
one is migrations.py; the queries over these tables are in the modules that ask them (store.py writes
and reads documents, search.py searches, texts.py keeps the text read from images, registry.py the
remembered channels).

`findimage.sqlite` holds the documents: `images` (a slot per document, never reused; its vector as
float32 bytes), `removed` (the slots the kNN cache must drop, by write version), `meta` (the schema
version, the release that wrote it, the last write's version, the models, the last pass), the path words
(`names`, FTS5), the text read from images (`texts`, `text_words`, `text_lines`) and the pictures'
fingerprints with their lookup keys (`fingerprints`, `fingerprint_keys`).

`channels.sqlite` (the remembered channels, beside their own embedded store) holds the channels' states,
their postings, the journal of Slack events not yet applied and the files deleted in Slack; it has kept
its first form, so it carries no version.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

SCHEMA_VERSION = 5
META_SCHEMA = "schema_version"
META_WRITTEN_BY = "findimage_version"
META_VECTOR_SIZE = "vector_size"

# Text read from images, per slot of `images` (slots are never reused): the reading as stored (state, reason,
# lines with boxes and confidences as JSON, attempts) and the content it was read from; every line's words in
# `text_words` (rowid = slot, ranked by BM25); each line's words on their own in `text_lines` (rowid =
# slot * LINE_SLOTS + line number), which answers "all query words in one line".
LINE_SLOTS = 1 << 16  # lines of one image in `text_lines`; any beyond are searched in `text_words` only

# unicode61 with remove_diacritics 2 folds what findimage.names leaves (it already lowercases and strips
# accents), so words typed into SQLite by hand match too.
WORDS = "tokenize='unicode61 remove_diacritics 2'"

IMAGES_TABLES = (
    """CREATE TABLE IF NOT EXISTS images (
    slot INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL UNIQUE,
    image_name TEXT NOT NULL,
    relative_path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    indexed_at REAL NOT NULL,
    model_id TEXT NOT NULL,
    embedding BLOB NOT NULL,
    version INTEGER NOT NULL,
    taken TEXT,
    taken_source TEXT
)""",
    "CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256)",
    "CREATE INDEX IF NOT EXISTS images_version ON images(version)",
    "CREATE INDEX IF NOT EXISTS images_taken ON images(taken)",
    "CREATE TABLE IF NOT EXISTS removed (slot INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS removed_version ON removed(version)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
NAMES_TABLE = f"CREATE VIRTUAL TABLE IF NOT EXISTS names USING fts5(words, {WORDS})"
TEXT_TABLES = (
    "CREATE TABLE IF NOT EXISTS texts (slot INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, state TEXT NOT NULL, "
    "reason TEXT NOT NULL, lines TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1)",
    "CREATE INDEX IF NOT EXISTS texts_sha256 ON texts(sha256)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS text_words USING fts5(words, {WORDS})",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS text_lines USING fts5(words, {WORDS}, detail=none)",
)
# The FTS5 indexes of words: a path's (NAMES_TABLE), the read text's (TEXT_TABLES).
NAME_INDEXES = ("names",)
TEXT_INDEXES = ("text_words", "text_lines")
MERGE_SEGMENTS_ABOVE = 4
MMAP_BYTES = 2**30  # the first GiB of findimage.sqlite, about 370,000 documents (240,000 in 4 KB pages)
# A document's row holds its 512-float vector (2 KB) and its fields, ~2.3 KB: one fits a 4 KB page (SQLite's
# default) with ~1.7 KB left empty, three fit 8 KB. At 100,000 documents the file is 287 MB against 417 MB,
# searches as fast; larger pages would save a little more and rewrite more bytes per changed row.
PAGE_BYTES = 8192
# A `--full` rebuild's documents and models, written beside the live ones while searches keep reading those,
# and moved into `images` and `meta` in one transaction at its end (store.py); gone when no rebuild runs.
REBUILD_TABLES = (
    "CREATE TABLE rebuild_images (image_id TEXT PRIMARY KEY, image_name TEXT NOT NULL, relative_path TEXT NOT NULL, "
    "embedding BLOB NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, width INTEGER NOT "
    "NULL, height INTEGER NOT NULL, indexed_at REAL NOT NULL, model_id TEXT NOT NULL, taken TEXT, taken_source TEXT, "
    "fingerprint TEXT)",
    "CREATE TABLE rebuild_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# The fingerprint of a slot's picture (findimage.fingerprint's string) and the content it was made from, beside
# `images` (like its text: a document re-upserted with other content loses it), and its lookup keys, one
# row each, found by key (a near-copy lookup asks for up to 128 probes).
FINGERPRINT_TABLES = (
    "CREATE TABLE IF NOT EXISTS fingerprints (slot INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, "
    "fingerprint TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fingerprint_keys (slot INTEGER NOT NULL, key INTEGER NOT NULL, "
    "PRIMARY KEY (slot, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS fingerprint_keys_key ON fingerprint_keys(key)",
)
# findimage.sqlite as this release makes it, every statement kept where it is there already.
TABLES = (*IMAGES_TABLES, NAMES_TABLE, *TEXT_TABLES, *FINGERPRINT_TABLES)

CHANNELS_TABLES = (
    "CREATE TABLE IF NOT EXISTS channels (channel TEXT PRIMARY KEY, state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS posted (image_id TEXT PRIMARY KEY, channel TEXT NOT NULL, file_id TEXT NOT NULL, "
    "message_ts TEXT NOT NULL, poster TEXT NOT NULL, permalink TEXT NOT NULL, title TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS posted_channel ON posted(channel)",
    "CREATE INDEX IF NOT EXISTS posted_file ON posted(file_id)",
    "CREATE TABLE IF NOT EXISTS journal (id TEXT PRIMARY KEY, lane TEXT NOT NULL, received REAL NOT NULL, "
    "entry TEXT NOT NULL, worker TEXT NOT NULL DEFAULT '', worker_until REAL NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS journal_lane ON journal(lane, received)",
    "CREATE TABLE IF NOT EXISTS gone (file_id TEXT PRIMARY KEY, until REAL NOT NULL)",
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to one of the store's files: WAL (kept in the file: readers never wait for the writer),
    autocommit (every transaction is explicit), usable from any thread (each caller holds its own lock)."""
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    # Only a new file takes it (before WAL is set, which writes the header); an existing one keeps its own.
    db.execute(f"PRAGMA page_size={PAGE_BYTES}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe against process kills, fast
    # Reads from the mapped file, not by a system call and a copy into SQLite's 2 MB page cache each: a
    # search looks up hundreds of random rows (its candidates' vectors, names and lines), ~2 us each
    # unmapped (400 vectors at 100k documents: 1.4 ms unmapped, 0.9 mapped). The mapped pages are the
    # kernel's file cache, given back under memory pressure like any other; writes are unchanged.
    db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    return db


def merge_word_indexes(db: sqlite3.Connection) -> list[str]:
    """Merge the segments of each FTS5 index holding more than MERGE_SEGMENTS_ABOVE into one; the indexes
    merged. FTS5 writes every transaction's words as a segment of its own and merges only segments of one
    level, so a first pass or an upgrade of a large archive leaves ten or so side by side, and each query
    walks a word's list in every one of them: three common words that no path holds together took 0.66 ms
    in the ten segments of 100,000 names, 0.23 ms in one. A merge rewrites the index (0.25 s at 100,000
    names); the few small segments later passes add cost little and are merged by FTS5 itself."""
    merged = [table for table in NAME_INDEXES + TEXT_INDEXES
              if db.execute(f"SELECT count(DISTINCT segid) FROM {table}_idx").fetchone()[0] > MERGE_SEGMENTS_ABOVE]
    merge_segments(db, merged)
    return merged


def merge_segments(db: sqlite3.Connection, indexes: Sequence[str]) -> None:
    """Each of these FTS5 indexes rewritten as one segment (FTS5's 'optimize'), without the words of rows
    deleted since (and their delete markers)."""
    for table in indexes:
        db.execute(f"INSERT INTO {table}({table}) VALUES('optimize')")


def create(db: sqlite3.Connection, tables: Sequence[str]) -> None:
    """The tables that are not there yet (inside the caller's transaction, if any)."""
    for statement in tables:
        db.execute(statement)


def written(db: sqlite3.Connection) -> tuple[int, str | None]:
    """The database's schema version (0: made before versions were kept, or not migrated yet) and the
    findimage release that wrote it (None: one from before releases were recorded)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return 0, None  # a new database
    rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (META_SCHEMA, META_WRITTEN_BY)))
    schema = rows.get(META_SCHEMA)
    return (int(schema) if schema and str(schema).isdigit() else 0), rows.get(META_WRITTEN_BY)


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (key, value))


def blob(vector: np.ndarray) -> bytes:
    """An embedding as `images.embedding` holds it: its float32 values (as many as the store's vector size,
    META_VECTOR_SIZE)."""
    return np.asarray(vector, dtype=np.float32).ravel().tobytes()


def vectors_of(blobs: Sequence[bytes], size: int = 0) -> np.ndarray:
    """`images.embedding` values (all of one size) as one (n, size) float32 array; (0, `size`) for none."""
    if not blobs:
        return np.empty((0, size), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)


def vector_size(db: sqlite3.Connection) -> int | None:
    """The size of the store's vectors: recorded when its first vector was written (from the image model), or
    that of a stored vector in a store made before it was recorded; None while it holds none."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (META_VECTOR_SIZE,)).fetchone()
    if row:
        return int(row[0])
    row = db.execute("SELECT length(embedding) / 4 FROM images LIMIT 1").fetchone()
    return int(row[0]) if row else None


def in_chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """`items` a few hundred at a time: SQLite takes at most 999 parameters per statement (older builds)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]

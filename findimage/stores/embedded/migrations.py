"""How a `findimage.sqlite` made by an earlier release becomes the one schema.py describes.

Schema 2 added `taken`/`taken_source` columns and the `names` table: the path words are filled from
relative_path; the dates stay empty until the next indexing pass reads them from the files' headers,
without embedding anything again.

Schema 3 added the text read from images (`texts`, `text_words`, `text_lines`), created empty: every
document is listed as waiting for its text.

Schema 4 added `texts.attempts` (a reading that timed out is tried again a bounded number of times); a
reading stored before counts as one attempt.

Schema 5 added the pictures' fingerprints (`fingerprints`, `fingerprint_keys`), created empty: the next
indexing pass decodes each indexed file once at a small size and adds its fingerprint, without embedding
anything again.

Beside the schema, `meta` records the findimage release that created or last migrated the database
(`findimage_version`; stores made before it was kept get it at their next open). A database of a newer
schema than this release knows is refused at open, in one sentence naming both releases: an older
findimage never writes into what a newer one made.

Each step checks what is there before it adds it: a database an older release opened again (and marked
with its own, older schema) is migrated again without losing what it holds.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable

from findimage import __version__
from findimage.errors import refuse_newer_schema
from findimage.names import name_words
from findimage.stores.embedded.schema import (
    FINGERPRINT_TABLES,
    META_SCHEMA,
    META_WRITTEN_BY,
    NAMES_TABLE,
    SCHEMA_VERSION,
    TABLES,
    TEXT_TABLES,
    create,
    set_meta,
    written,
)


def refuse_newer(db: sqlite3.Connection, where: str) -> None:
    """StoreTooNew for a database (in the folder `where`) of a newer schema than this release knows."""
    schema, written_by = written(db)
    refuse_newer_schema(f"The store in {where}", written_by, schema, SCHEMA_VERSION)


def open_current(db: sqlite3.Connection, where: str) -> None:
    """The database (in the folder `where`) as schema.py describes it, in one transaction: a new one made
    whole, an older one migrated step by step; several processes opening it at once do it once. A newer
    one is refused (StoreTooNew) before anything is written."""
    refuse_newer(db, where)
    schema, written_by = written(db)
    if schema == SCHEMA_VERSION and written_by is not None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        refuse_newer(db, where)
        schema, written_by = written(db)
        if schema < SCHEMA_VERSION:
            if _has_documents_table(db):
                for version, step in STEPS:
                    if schema < version:
                        step(db)
            create(db, TABLES)
            set_meta(db, META_SCHEMA, str(SCHEMA_VERSION))
        if schema < SCHEMA_VERSION or written_by is None:
            set_meta(db, META_WRITTEN_BY, __version__)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _has_documents_table(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='images'").fetchone() is not None


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _names_and_dates(db: sqlite3.Connection) -> None:
    """Schema 2: the date columns and the path words, filled from relative_path."""
    columns = _columns(db, "images")
    for column in ("taken", "taken_source"):
        if column not in columns:
            db.execute(f"ALTER TABLE images ADD COLUMN {column} TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS images_taken ON images(taken)")
    db.execute(NAMES_TABLE)
    db.execute("DELETE FROM names")
    rows = db.execute("SELECT slot, relative_path FROM images").fetchall()
    db.executemany("INSERT INTO names(rowid, words) VALUES(?, ?)",
                   [(slot, name_words(path)) for slot, path in rows])


def _texts(db: sqlite3.Connection) -> None:
    """Schema 3: the tables of text read from images, empty (kept where they are: a database migrated
    again keeps its texts)."""
    create(db, TEXT_TABLES)


def _attempts(db: sqlite3.Connection) -> None:
    """Schema 4: how often an image's text was read, one for a reading stored before."""
    if "attempts" not in _columns(db, "texts"):
        db.execute("ALTER TABLE texts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")


def _fingerprints(db: sqlite3.Connection) -> None:
    """Schema 5: the fingerprint tables, empty (kept where they are: a database migrated again keeps them)."""
    create(db, FINGERPRINT_TABLES)


# (the schema a step brings a database to, the step), in order; the last one is SCHEMA_VERSION.
STEPS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _names_and_dates),
    (3, _texts),
    (4, _attempts),
    (5, _fingerprints),
)

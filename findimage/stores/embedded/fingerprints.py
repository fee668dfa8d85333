"""The embedded store's picture fingerprints (the tables are schema.FINGERPRINT_TABLES): writes inside the
caller's transaction, and the reads a near-copy lookup, the duplicates report and an indexing pass ask for.

A fingerprint belongs to a slot and to the content (sha256) it was made from, as a reading of the image's
text does (texts.py): it is stored only for a document that still holds that content, and goes when the
document is deleted or written again (with the fingerprint it is written with, if any), in the same
transaction.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from findimage.fingerprint import Fingerprint
from findimage.records import FileState
from findimage.stores.embedded.schema import in_chunks

# A document as a near-copy lookup and the report give it: its file state, then its fingerprint.
_STATE = ("images.image_id, images.relative_path, images.sha256, images.size, images.mtime, images.model_id, "
          "coalesce(images.taken_source, '')")


def write_fingerprints(db: sqlite3.Connection, items: Sequence[tuple[str, str, str]]) -> None:
    """(image_id, sha256 made from, fingerprint string): each replaces what its document held; one of content
    the document no longer holds (or of a document gone) is not kept."""
    for image_id, sha256, text in items:
        keys = Fingerprint.from_string(text).keys()  # a string that is no fingerprint is refused here
        row = db.execute("SELECT slot, sha256 FROM images WHERE image_id=?", (image_id,)).fetchone()
        if row is None or row[1] != sha256:
            continue
        slot = row[0]
        forget_fingerprints(db, [slot])
        db.execute("INSERT INTO fingerprints(slot, sha256, fingerprint) VALUES(?, ?, ?)", (slot, sha256, text))
        db.executemany("INSERT INTO fingerprint_keys(slot, key) VALUES(?, ?)", [(slot, key) for key in keys])


def forget_fingerprints(db: sqlite3.Connection, slots: Iterable[int]) -> None:
    for chunk in in_chunks([int(s) for s in slots], 500):
        marks = ",".join("?" * len(chunk))
        db.execute(f"DELETE FROM fingerprints WHERE slot IN ({marks})", chunk)
        db.execute(f"DELETE FROM fingerprint_keys WHERE slot IN ({marks})", chunk)


def forget_fingerprints_of(db: sqlite3.Connection, ids: Sequence[str]) -> None:
    """The fingerprints of the documents with these ids (before they are deleted or written again)."""
    slots = []
    for chunk in in_chunks(list(ids), 500):
        slots += [r[0] for r in db.execute(f"SELECT slot FROM images WHERE image_id IN "
                                           f"({','.join('?' * len(chunk))})", chunk)]
    forget_fingerprints(db, slots)


def fingerprint_pending(db: sqlite3.Connection) -> list[FileState]:
    """Every document without a fingerprint of its current content, by path."""
    rows = db.execute(f"SELECT {_STATE} FROM images LEFT JOIN fingerprints ON fingerprints.slot = images.slot "
                      "WHERE fingerprints.slot IS NULL OR fingerprints.sha256 != images.sha256 "
                      "ORDER BY images.relative_path").fetchall()
    return [FileState(*r) for r in rows]


def with_keys(db: sqlite3.Connection, probes: Sequence[int]) -> list[tuple[FileState, str, str | None, str]]:
    """The documents whose keys include any of the probes: (file state, image name, date, fingerprint)."""
    found = []
    for chunk in in_chunks(list(probes), 500):
        found += db.execute(
            f"SELECT {_STATE}, images.image_name, images.taken, fingerprints.fingerprint FROM images "
            "JOIN fingerprints ON fingerprints.slot = images.slot AND fingerprints.sha256 = images.sha256 "
            "WHERE images.slot IN (SELECT slot FROM fingerprint_keys WHERE key IN "
            f"({','.join('?' * len(chunk))}))", chunk).fetchall()
    unique = {row[0]: row for row in found}  # a document hit by probes of two chunks once
    return [(FileState(*row[:7]), row[7], row[8], row[9]) for row in unique.values()]


def all_fingerprints(db: sqlite3.Connection, folder: str | None) -> list[tuple[FileState, str]]:
    """Every document's file state and fingerprint (under `folder`), by path."""
    where, params = "", []
    if folder is not None:  # a range of paths: the unique index on relative_path answers it
        where, params = "WHERE images.relative_path >= ? AND images.relative_path < ?", [folder + "/", folder + "0"]
    rows = db.execute(f"SELECT {_STATE}, fingerprints.fingerprint FROM images JOIN fingerprints ON "
                      f"fingerprints.slot = images.slot AND fingerprints.sha256 = images.sha256 {where} "
                      "ORDER BY images.relative_path", params).fetchall()
    return [(FileState(*row[:7]), row[7]) for row in rows]


def fingerprints_of(db: sqlite3.Connection, image_ids: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in in_chunks(sorted(set(image_ids)), 500):
        found.update(db.execute(
            "SELECT images.image_id, fingerprints.fingerprint FROM images JOIN fingerprints ON "
            "fingerprints.slot = images.slot AND fingerprints.sha256 = images.sha256 WHERE images.image_id IN "
            f"({','.join('?' * len(chunk))})", chunk).fetchall())
    return found

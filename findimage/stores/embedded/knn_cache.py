"""The embedded store's kNN cache: a faiss index (vector_index) kept in step with SQLite, on a
connection and under a lock of its own.

Readers in other processes (the bot) see the indexer's commits through a per-write version number and
apply only what changed since they last looked. Loading a large snapshot, rebuilding it or searching
holds only this lock, so documents and metadata (count, get, writes) never wait for it.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from findimage.stores.embedded.schema import connect, in_chunks, vector_size, vectors_of
from findimage.stores.embedded.vector_index import VectorIndex, sample_positions, wanted_kind

log = logging.getLogger(__name__)


def current_version(db: sqlite3.Connection) -> int:
    """The version of the last write (every write transaction stamps a new one)."""
    row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
    return int(row[0]) if row else 0


class KnnCache:
    """`fresh()` is the index as of the last commit; callers hold `lock` and query on `db`."""

    def __init__(self, data_dir: Path, db_path: Path):
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.db = connect(db_path)
        self._index: VectorIndex | None = None
        self._seen_data_version: int | None = None

    @property
    def index(self) -> VectorIndex | None:
        """The index as last brought up to date (None before the first search)."""
        return self._index

    def save(self) -> None:
        """The snapshot the next process opens in seconds, rebuilt first where it outgrew its kind."""
        with self.lock:
            index = self.fresh()
            if index.kind != wanted_kind(len(index)) or index.outgrown():  # more lists as the archive grows
                index = self.rebuild()
            index.save(self.data_dir)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def fresh(self) -> VectorIndex:
        """The kNN cache, brought up to date with every commit (this process's too) since last use.

        PRAGMA data_version counts commits of other connections, and every write goes through the
        documents connection, so one number covers this process and the indexer in another."""
        db = self.db
        data_version = db.execute("PRAGMA data_version").fetchone()[0]
        if self._index is not None and data_version == self._seen_data_version:
            return self._index
        self._seen_data_version = data_version
        if self._index is None or self._snapshot_kind_changed(self._index):
            self._index = VectorIndex.load(self.data_dir) or VectorIndex.empty(vector_size(db) or 1)
        db.execute("BEGIN")
        try:
            current, size = current_version(db), vector_size(db)
            if size and self._index.dims != size:  # a --full rebuild swapped in vectors of another model's size
                db.execute("COMMIT")
                return self.rebuild()
            if self._index.version > current:  # snapshot from a database that was replaced
                db.execute("COMMIT")
                return self.rebuild()
            if self._index.version == 0 and len(self._index) == 0 and wanted_kind(self._rows(db)) == "ivf":
                db.execute("COMMIT")  # a first open of a large store: build the right kind, in chunks
                return self.rebuild()
            self._apply_changes_since(self._index)
            self._index.version = current
        finally:
            if db.in_transaction:
                db.execute("COMMIT")
        return self._index

    def _snapshot_kind_changed(self, index: VectorIndex) -> bool:
        generation = VectorIndex.snapshot_generation(self.data_dir)
        return generation is not None and generation != index.generation and wanted_kind(len(index)) != index.kind

    def _apply_changes_since(self, index: VectorIndex) -> None:
        """Every write since `index.version` applied to `index`."""
        db, version = self.db, index.version
        if version > 0:
            removed = [r[0] for r in db.execute("SELECT slot FROM removed WHERE version > ?", (version,))]
            changed = [r[0] for r in db.execute("SELECT slot FROM images WHERE version > ?", (version,))]
            index.remove(np.asarray(removed + changed, dtype=np.int64))
        for slots, vectors in _chunked(db.execute("SELECT slot, embedding FROM images WHERE version > ?",
                                                  (version,))):
            index.add(slots, vectors)

    @staticmethod
    def _rows(db: sqlite3.Connection) -> int:
        return db.execute("SELECT count(*) FROM images").fetchone()[0]

    def rebuild(self) -> VectorIndex:
        """A new kNN index from every stored vector, streamed from SQLite in one read transaction:
        the training sample, then the vectors in chunks, never all of them in memory at once."""
        started = time.monotonic()
        db = self.db
        db.execute("BEGIN")
        try:
            version, count = current_version(db), self._rows(db)
            sample = self._training_sample(db, count) if wanted_kind(count) == "ivf" else None
            self._index = VectorIndex.build_from(count, sample, _chunked(db.execute(
                "SELECT slot, embedding FROM images ORDER BY slot")), version, vector_size(db) or 1)
        finally:
            db.execute("COMMIT")
        log.info("built %s kNN index over %d vectors in %.1fs", self._index.kind, len(self._index),
                 time.monotonic() - started)
        return self._index

    @staticmethod
    def _training_sample(db: sqlite3.Connection, count: int) -> np.ndarray:
        all_slots = np.fromiter((r[0] for r in db.execute("SELECT slot FROM images ORDER BY slot")), np.int64, count)
        chosen = all_slots[sample_positions(len(all_slots))]
        blobs = []
        for chunk in in_chunks([int(s) for s in chosen], 900):
            blobs += [r[0] for r in db.execute(
                f"SELECT embedding FROM images WHERE slot IN ({','.join('?' * len(chunk))})", chunk)]
        return vectors_of(blobs)



def _chunked(cursor: sqlite3.Cursor, size: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(slots, vectors) from a cursor over (slot, embedding) rows, `size` rows at a time."""
    while rows := cursor.fetchmany(size):
        yield np.asarray([r[0] for r in rows], dtype=np.int64), vectors_of([r[1] for r in rows])

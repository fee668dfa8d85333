"""The embedded default store: one SQLite file (WAL) as the source of truth plus a faiss kNN cache.

Crash safety comes from SQLite transactions; readers in other processes (the bot) see the indexer's
commits through a per-write version number and apply only what changed since they last looked.

Two connections, two locks: documents and metadata (count, get, writes: always quick) on one; the kNN
cache (loading a snapshot, rebuilding it, searching) on the other. Loading a large snapshot therefore
never stalls `/healthz`, image links or the indexer's bookkeeping, only other kNN searches.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from findimage.stores.embedded.schema import forget_names, in_chunks, migrate, open_term_counts, vectors_of, write_names
from findimage.stores.embedded.search import EmbeddedSearch
from findimage.errors import StoreError
from findimage.records import DIMS, FileState, ImageDoc
from findimage.stores.embedded.vector_index import VectorIndex, sample_positions, wanted_kind

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
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
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);
CREATE INDEX IF NOT EXISTS images_version ON images(version);
CREATE TABLE IF NOT EXISTS removed (slot INTEGER PRIMARY KEY, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_version ON removed(version);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

DOC_COLUMNS = ("image_id, image_name, relative_path, embedding, sha256, size, mtime, width, height, "
               "indexed_at, model_id, taken, taken_source")


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).reshape(DIMS).tobytes()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe against process kills, fast
    return db


class EmbeddedStore(EmbeddedSearch):
    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "findimage.sqlite"
        self.description = f"embedded ({self.db_path})"
        self._lock = threading.RLock()  # the documents connection
        with self._write_errors_explained():  # a full disk can stop the very first write
            self._db = _connect(self.db_path)
            self._db.executescript(SCHEMA)
            migrate(self._db)
        self._index_lock = threading.RLock()  # the kNN cache and its own connection
        self._index_db = _connect(self.db_path)
        open_term_counts(self._index_db)
        self._index: VectorIndex | None = None
        self._seen_data_version: int | None = None

    # ---- writes -------------------------------------------------------------------------------
    def _write(self, work) -> None:
        """Run `work(db, version)` in one immediate transaction stamped with a new version."""
        with self._lock, self._write_errors_explained():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._current_version(self._db) + 1
                work(self._db, version)
                self._db.execute("INSERT INTO meta(key, value) VALUES('version', ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(version),))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _write_errors_explained(self):
        """A failed write (disk full, read-only folder) as one sentence; the transaction left nothing behind."""
        try:
            yield
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StoreError(f"Could not write the index in {self.data_dir} ({reason}): free some disk space or "
                             "fix the folder's permissions, then run the pass again; it continues where this one "
                             "stopped.") from exc

    def upsert(self, docs: Sequence[ImageDoc]) -> None:
        if not docs:
            return

        def work(db, version):
            db.executemany(
                f"INSERT INTO images({DOC_COLUMNS}, version) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(image_id) DO UPDATE SET image_name=excluded.image_name, "
                "relative_path=excluded.relative_path, embedding=excluded.embedding, sha256=excluded.sha256, "
                "size=excluded.size, mtime=excluded.mtime, width=excluded.width, height=excluded.height, "
                "indexed_at=excluded.indexed_at, model_id=excluded.model_id, taken=excluded.taken, "
                "taken_source=excluded.taken_source, version=excluded.version",
                [(d.image_id, d.image_name, d.relative_path, _blob(d.image_embedding), d.sha256, d.size,
                  d.mtime, d.width, d.height, d.indexed_at, d.model_id, d.taken, d.taken_source or None, version)
                 for d in docs])
            write_names(db, [(d.image_id, d.relative_path) for d in docs])

        self._write(work)

    def delete(self, image_ids: Iterable[str]) -> None:
        ids = list(image_ids)
        if not ids:
            return

        def work(db, version):
            for chunk in in_chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                forget_names(db, marks, chunk)
                db.execute(f"INSERT OR REPLACE INTO removed(slot, version) "
                           f"SELECT slot, ? FROM images WHERE image_id IN ({marks})", (version, *chunk))
                db.execute(f"DELETE FROM images WHERE image_id IN ({marks})", chunk)

        self._write(work)

    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) of documents indexed before dates were kept.
        Vectors are untouched, so the kNN cache has nothing to apply."""
        if not dates:
            return

        def work(db, version):
            db.executemany("UPDATE images SET taken=?, taken_source=? WHERE image_id=?",
                           [(taken, source, image_id) for image_id, _, taken, source in dates])
            write_names(db, [(image_id, path) for image_id, path, _, _ in dates])

        self._write(work)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._write_errors_explained():
            self._db.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def begin_rebuild(self) -> None:
        """Embedded rebuilds happen in place: every document is rewritten with the new model's vector."""

    def finish_rebuild(self) -> None:
        self.checkpoint()

    def checkpoint(self) -> None:
        """Save the kNN cache so the next process opens in seconds, and fold the WAL into the database."""
        with self._index_lock, self._write_errors_explained():
            index = self._fresh_index()
            if index.kind != wanted_kind(len(index)) or index.outgrown():  # more lists as the archive grows
                index = self._rebuild_index()
            index.save(self.data_dir)
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # ---- reads --------------------------------------------------------------------------------
    def get(self, image_id: str) -> ImageDoc | None:
        with self._lock:
            row = self._db.execute(f"SELECT {DOC_COLUMNS} FROM images WHERE image_id=?", (image_id,)).fetchone()
        return _doc(row) if row else None

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM images").fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def file_states(self) -> dict[str, FileState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT image_id, relative_path, sha256, size, mtime, model_id, coalesce(taken_source, '') "
                "FROM images").fetchall()
        return {r[1]: FileState(*r) for r in rows}

    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for chunk in in_chunks(sorted(set(sha256s)), 500):
                rows = self._db.execute(
                    f"SELECT sha256, embedding FROM images WHERE model_id=? AND sha256 IN "
                    f"({','.join('?' * len(chunk))})", (model_id, *chunk)).fetchall()
                found.update((sha, np.frombuffer(blob, np.float32).copy()) for sha, blob in rows)
        return found

    # ---- the kNN cache (under _index_lock, on _index_db) ---------------------------------------
    @staticmethod
    def _current_version(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def _fresh_index(self) -> VectorIndex:
        """The kNN cache, brought up to date with every commit (this process's too) since last use.

        PRAGMA data_version counts commits of other connections, and every write goes through the
        documents connection, so one number covers this process and the indexer in another."""
        db = self._index_db
        data_version = db.execute("PRAGMA data_version").fetchone()[0]
        if self._index is not None and data_version == self._seen_data_version:
            return self._index
        self._seen_data_version = data_version
        if self._index is None or self._snapshot_kind_changed():
            self._index = VectorIndex.load(self.data_dir) or VectorIndex.empty()
        db.execute("BEGIN")
        try:
            current = self._current_version(db)
            if self._index.version > current:  # snapshot from a database that was replaced
                db.execute("COMMIT")
                return self._rebuild_index()
            if self._index.version == 0 and len(self._index) == 0 and wanted_kind(self._rows(db)) == "ivf":
                db.execute("COMMIT")  # a first open of a large store: build the right kind, in chunks
                return self._rebuild_index()
            self._apply_changes_since(self._index.version)
            self._index.version = current
        finally:
            if db.in_transaction:
                db.execute("COMMIT")
        return self._index

    def _snapshot_kind_changed(self) -> bool:
        generation = VectorIndex.snapshot_generation(self.data_dir)
        return generation is not None and generation != self._index.generation and wanted_kind(
            len(self._index)) != self._index.kind

    def _apply_changes_since(self, version: int) -> None:
        db = self._index_db
        if version > 0:
            removed = [r[0] for r in db.execute("SELECT slot FROM removed WHERE version > ?", (version,))]
            changed = [r[0] for r in db.execute("SELECT slot FROM images WHERE version > ?", (version,))]
            self._index.remove(np.asarray(removed + changed, dtype=np.int64))
        for slots, vectors in _chunked(db.execute("SELECT slot, embedding FROM images WHERE version > ?",
                                                  (version,))):
            self._index.add(slots, vectors)

    @staticmethod
    def _rows(db: sqlite3.Connection) -> int:
        return db.execute("SELECT count(*) FROM images").fetchone()[0]

    def _rebuild_index(self) -> VectorIndex:
        """A new kNN index from every stored vector, streamed from SQLite in one read transaction:
        the training sample, then the vectors in chunks, never all of them in memory at once."""
        started = time.monotonic()
        db = self._index_db
        db.execute("BEGIN")
        try:
            version, count = self._current_version(db), self._rows(db)
            sample = self._training_sample(db, count) if wanted_kind(count) == "ivf" else None
            self._index = VectorIndex.build_from(count, sample, _chunked(db.execute(
                "SELECT slot, embedding FROM images ORDER BY slot")), version)
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

    def details(self) -> list[tuple[str, str]]:
        """The kNN snapshot on disk: what kind, how many vectors, and how far behind the database it is."""
        pointer = VectorIndex.snapshot_info(self.data_dir)
        if pointer is None:
            return [("knn index", "no snapshot yet (made at the end of each indexing pass)")]
        with self._lock:
            version = self._current_version(self._db)
        behind = version - int(pointer.get("version", 0))
        state = "current" if behind <= 0 else f"{behind} write(s) behind, applied when a search opens it"
        return [("knn index", f"{pointer.get('kind')} over {pointer.get('count'):,} vectors ({state})")]

    def close(self) -> None:
        with self._index_lock:
            self._index_db.close()
        with self._lock:
            self._db.close()


def _doc(row) -> ImageDoc:
    (image_id, name, path, blob, sha, size, mtime, width, height, indexed_at, model_id, taken, source) = row
    return ImageDoc(image_id, name, path, np.frombuffer(blob, np.float32).copy(), sha, size, mtime, width,
                    height, indexed_at, model_id, taken, source or "")


def _chunked(cursor, size: int = 20_000):
    """(slots, vectors) from a cursor over (slot, embedding) rows, `size` rows at a time."""
    while rows := cursor.fetchmany(size):
        yield np.asarray([r[0] for r in rows], dtype=np.int64), vectors_of([r[1] for r in rows])

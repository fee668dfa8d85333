"""The embedded default store: one SQLite file (WAL) as the source of truth plus a faiss kNN cache.

Crash safety comes from SQLite transactions. Two connections, two locks: documents and metadata (count,
get, writes: always quick) here; the kNN cache (loading a snapshot, rebuilding it, searching) in
knn_cache.py, searched by search.py. The tables are schema.py's, brought up to date at open by
migrations.py. Loading a large snapshot therefore never stalls `/healthz`, image
links or the indexer's bookkeeping, only other kNN searches.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from findimage.duplicates import confirmed
from findimage.errors import StoreError, check_vector_size
from findimage.fingerprint import Fingerprint
from findimage.names import name_words
from findimage.query import EVERYWHERE, Filters
from findimage.records import FileState, ImageDoc, Match, ReadText
from findimage.stores.embedded import fingerprints
from findimage.stores.embedded.erasing import empty_wal, merge_out_deleted_words, zero_deleted_content
from findimage.stores.embedded.knn_cache import KnnCache, current_version
from findimage.stores.embedded.migrations import open_current, refuse_newer
from findimage.stores.embedded.schema import (
    META_VECTOR_SIZE,
    REBUILD_TABLES,
    blob,
    connect,
    in_chunks,
    merge_word_indexes,
    set_meta,
    vector_size,
)
from findimage.stores.embedded.search import EmbeddedSearch
from findimage.stores.embedded.texts import (
    forget_changed_texts,
    forget_texts_of,
    text_pending,
    text_status,
    texts_by_sha256,
    write_texts,
)
from findimage.stores.embedded.vector_index import VectorIndex

log = logging.getLogger(__name__)

REBUILD = "rebuild"  # what a worker is told to write into while a --full rebuild runs (rebuild_target)
DOC_COLUMNS = ("image_id, image_name, relative_path, embedding, sha256, size, mtime, width, height, "
               "indexed_at, model_id, taken, taken_source")


class EmbeddedStore:
    """Documents and metadata on one connection (always quick); the kNN cache (KnnCache) and the
    searches over it (EmbeddedSearch) on another, composed here."""

    def __init__(self, data_dir: str | Path, erase_deleted: bool = False):
        """`erase_deleted`: a deletion leaves none of the documents' words, text or vectors in the
        store's files (erasing.py), for a store of what people may ask to have forgotten."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "findimage.sqlite"
        self.description = f"embedded ({self.db_path})"
        self.erase_deleted = erase_deleted
        self._lock = threading.RLock()  # the documents connection
        with self._write_errors_explained():  # a full disk can stop the very first write
            self._db = connect(self.db_path)
            refuse_newer(self._db, str(self.data_dir))  # before any write: a newer release's store stays as it is
            if erase_deleted:
                zero_deleted_content(self._db)
            open_current(self._db, str(self.data_dir))
        self._cache = KnnCache(self.data_dir, self.db_path)
        self._search = EmbeddedSearch(self._cache)
        self._rebuilding = False  # writes go to the rebuild's tables (REBUILD_TABLES), searches read the live ones

    # ---- searches (EmbeddedSearch, on the kNN cache) -------------------------------------------
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            filters: Filters = EVERYWHERE) -> list[Match]:
        return self._search.knn(vector, k, num_candidates, filters)

    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match]]:
        return self._search.hybrid(vector, words, k, num_candidates, filters)

    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int,
                     filters: Filters = EVERYWHERE) -> list[Match]:
        return self._search.text_ranking(vector, words, k, filters)

    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match], list[Match]]:
        return self._search.hybrid_with_text(vector, words, k, num_candidates, filters)

    # ---- writes -------------------------------------------------------------------------------
    def _write(self, work: Callable[[sqlite3.Connection, int], None], stamped: bool = True) -> None:
        """Run `work(db, version)` in one immediate transaction stamped with a new version (unless it
        changes nothing the kNN cache holds: not `stamped`)."""
        with self._lock, self._write_errors_explained():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = current_version(self._db) + 1
                work(self._db, version)
                if stamped:
                    set_meta(self._db, "version", str(version))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _write_errors_explained(self) -> Iterator[None]:
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
        if self._rebuilding:
            self._write(lambda db, _: _stage(db, docs), stamped=False)
            return

        def work(db: sqlite3.Connection, version: int) -> None:
            _take_vector_size(db, docs)
            _write_docs(db, docs, version)

        self._write(work)

    def delete(self, image_ids: Iterable[str]) -> None:
        ids = list(image_ids)
        if not ids:
            return

        def work(db: sqlite3.Connection, version: int) -> None:
            read = False
            for chunk in in_chunks(ids, 500):
                if self._rebuilding:
                    db.execute(f"DELETE FROM rebuild_images WHERE image_id IN ({','.join('?' * len(chunk))})",
                               chunk)
                read = _forget_documents(db, chunk, version) or read
            if self.erase_deleted:
                merge_out_deleted_words(db, with_text=read)

        self._write(work)
        if self.erase_deleted:
            with self._lock, self._write_errors_explained():
                empty_wal(self._db, str(self.db_path))
            with self._cache.lock, self._write_errors_explained():
                VectorIndex.drop_snapshot(self.data_dir)

    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) of documents indexed before dates were kept.
        Vectors are untouched, so the kNN cache has nothing to apply."""
        if not dates:
            return

        def work(db: sqlite3.Connection, version: int) -> None:
            db.executemany("UPDATE images SET taken=?, taken_source=? WHERE image_id=?",
                           [(taken, source, image_id) for image_id, _, taken, source in dates])
            write_names(db, [(image_id, path) for image_id, path, _, _ in dates])

        self._write(work)

    def set_texts(self, items: Sequence[tuple[str, str, ReadText]]) -> None:
        """(image_id, sha256 read from, reading), in one transaction; readings of content a document no
        longer holds are not kept. The vectors are untouched: the kNN cache has nothing to apply."""
        if items:
            self._write(lambda db, _: write_texts(db, items), stamped=False)

    def set_fingerprints(self, items: Sequence[tuple[str, str, str]]) -> None:
        """(image_id, sha256 made from, fingerprint), in one transaction; those of content a document no longer
        holds are not kept. The vectors are untouched: the kNN cache has nothing to apply."""
        if items:
            self._write(lambda db, _: fingerprints.write_fingerprints(db, items), stamped=False)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._write_errors_explained():
            if self._rebuilding:  # the rebuild's models: live with its documents
                self._db.execute("INSERT OR REPLACE INTO rebuild_meta(key, value) VALUES(?, ?)", (key, value))
            else:
                set_meta(self._db, key, value)

    def begin_rebuild(self) -> None:
        """Every document is written anew beside the live ones (REBUILD_TABLES), with the new model's vectors
        of any size, while searches keep reading the live documents; finish_rebuild swaps them in at once.
        What an interrupted rebuild left is dropped."""
        def work(db: sqlite3.Connection, _: int) -> None:
            for table in ("rebuild_images", "rebuild_meta"):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in REBUILD_TABLES:
                db.execute(statement)

        self._write(work, stamped=False)
        self._rebuilding = True

    def finish_rebuild(self) -> None:
        """The rebuilt documents, their vector size and models replace the live ones in one transaction (a
        search sees the old or the new, never a mix); documents the rebuild did not write go."""
        if self._rebuilding:
            self._write(_swap_in_rebuild)
            self._rebuilding = False
        self.checkpoint()

    def rebuild_target(self) -> str | None:
        return REBUILD if self._rebuilding else None

    def write_into(self, target: str | None) -> None:
        """A worker's writes: into the live documents (None) or the rebuild another process began."""
        if target is None:
            self._rebuilding = False
            return
        with self._lock:
            began = self._db.execute("SELECT 1 FROM sqlite_master WHERE name='rebuild_images'").fetchone()
        if target != REBUILD or not began:
            raise StoreError(f"The embedded store has no rebuild in progress to write into ({target!r}).")
        self._rebuilding = True

    def checkpoint(self) -> None:
        """Save the kNN cache so the next process opens in seconds, merge the word indexes that a pass left
        in many pieces (each query walks every piece: schema.merge_word_indexes), and fold the WAL into the
        database."""
        with self._write_errors_explained():
            self._cache.save()
            with self._lock:
                merged = merge_word_indexes(self._db)
            if merged:
                log.info("merged the segments of %s", ", ".join(merged))
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # ---- reads --------------------------------------------------------------------------------
    def get(self, image_id: str) -> ImageDoc | None:
        with self._lock:
            row = self._db.execute(f"SELECT {DOC_COLUMNS}, (SELECT fingerprint FROM fingerprints WHERE "
                                   "fingerprints.slot = images.slot AND fingerprints.sha256 = images.sha256) "
                                   "FROM images WHERE image_id=?", (image_id,)).fetchone()
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

    def texts_by_sha256(self, sha256s: Iterable[str]) -> dict[str, ReadText]:
        with self._lock:
            return texts_by_sha256(self._db, sha256s)

    def text_pending(self, limit: int) -> list[FileState]:
        with self._lock:
            return text_pending(self._db, limit)

    def text_status(self) -> tuple[int, int]:
        with self._lock:
            return text_status(self._db)

    def fingerprint_pending(self) -> list[FileState]:
        with self._lock:
            return fingerprints.fingerprint_pending(self._db)

    def near_copies(self, fingerprint: Fingerprint, filters: Filters = EVERYWHERE) -> list[Match]:
        with self._lock:
            found = fingerprints.with_keys(self._db, fingerprint.probes())
        return confirmed(fingerprint, found, filters)

    def fingerprints(self, folder: str | None = None) -> list[tuple[FileState, str]]:
        with self._lock:
            return fingerprints.all_fingerprints(self._db, folder)

    def fingerprints_of(self, image_ids: Iterable[str]) -> dict[str, str]:
        with self._lock:
            return fingerprints.fingerprints_of(self._db, image_ids)

    @property
    def knn_index(self) -> VectorIndex | None:
        """The kNN index as the last search left it (for measurements and tests)."""
        return self._cache.index

    def details(self) -> list[tuple[str, str]]:
        """The kNN snapshot on disk: what kind, how many vectors, and how far behind the database it is."""
        pointer = VectorIndex.snapshot_info(self.data_dir)
        if pointer is None:
            return [("knn index", "no snapshot yet (made at the end of each indexing pass)")]
        with self._lock:
            version = current_version(self._db)
        behind = version - int(pointer.get("version", 0))
        state = "current" if behind <= 0 else f"{behind} write(s) behind, applied when a search opens it"
        return [("knn index", f"{pointer.get('kind')} over {pointer.get('count'):,} vectors ({state})")]

    def close(self) -> None:
        self._cache.close()
        with self._lock:
            self._db.close()


def _write_docs(db: sqlite3.Connection, docs: Sequence[ImageDoc], version: int) -> None:
    """Whole documents into `images`, their path words with them (inside the caller's transaction)."""
    forget_changed_texts(db, [(d.image_id, d.sha256) for d in docs])
    db.executemany(
        f"INSERT INTO images({DOC_COLUMNS}, version) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(image_id) DO UPDATE SET image_name=excluded.image_name, "
        "relative_path=excluded.relative_path, embedding=excluded.embedding, sha256=excluded.sha256, "
        "size=excluded.size, mtime=excluded.mtime, width=excluded.width, height=excluded.height, "
        "indexed_at=excluded.indexed_at, model_id=excluded.model_id, taken=excluded.taken, "
        "taken_source=excluded.taken_source, version=excluded.version",
        [(d.image_id, d.image_name, d.relative_path, blob(d.image_embedding), d.sha256, d.size,
          d.mtime, d.width, d.height, d.indexed_at, d.model_id, d.taken, d.taken_source or None, version)
         for d in docs])
    write_names(db, [(d.image_id, d.relative_path) for d in docs])
    # A document holds the fingerprint it was last written with (none: the next pass adds it).
    fingerprints.forget_fingerprints_of(db, [d.image_id for d in docs])
    fingerprints.write_fingerprints(db, [(d.image_id, d.sha256, d.fingerprint) for d in docs if d.fingerprint])


def _size_of(docs: Sequence[ImageDoc]) -> int:
    sizes = {int(np.asarray(d.image_embedding).size) for d in docs}
    if len(sizes) != 1:
        raise StoreError(f"One write held vectors of {len(sizes)} sizes ({sorted(sizes)}); nothing was written.")
    return sizes.pop()


def _take_vector_size(db: sqlite3.Connection, docs: Sequence[ImageDoc]) -> None:
    """The store's vector size is that of the image model whose vectors it got first (recorded); vectors of
    another size are refused in the sentence that says to rebuild."""
    size, stored = _size_of(docs), vector_size(db)
    check_vector_size(stored, size)
    set_meta(db, META_VECTOR_SIZE, str(stored or size))


def _stage(db: sqlite3.Connection, docs: Sequence[ImageDoc]) -> None:
    """A rebuild's documents, beside the live ones until the rebuild ends."""
    size, staged = _size_of(docs), _staged_size(db)
    if staged and staged != size:
        raise StoreError(f"The rebuild holds {staged}-dim vectors and was given {size}-dim ones: two models "
                         "write one rebuild; run `findimage index --full` again.")
    db.executemany(f"INSERT OR REPLACE INTO rebuild_images({DOC_COLUMNS}, fingerprint) "
                   "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   [(d.image_id, d.image_name, d.relative_path, blob(d.image_embedding), d.sha256, d.size,
                     d.mtime, d.width, d.height, d.indexed_at, d.model_id, d.taken, d.taken_source or None,
                     d.fingerprint or None) for d in docs])


def _staged_size(db: sqlite3.Connection) -> int | None:
    """The vector size of the documents a rebuild wrote so far; None before the first."""
    row = db.execute("SELECT length(embedding) / 4 FROM rebuild_images LIMIT 1").fetchone()
    return int(row[0]) if row else None


def _forget_documents(db: sqlite3.Connection, image_ids: list[str], version: int) -> bool:
    """Documents (at most SQLite's parameters) with their names, texts and fingerprints, their slots handed
    to the kNN cache's `removed` (inside the caller's transaction); whether any had text read."""
    marks = ",".join("?" * len(image_ids))
    forget_names(db, marks, image_ids)
    read = forget_texts_of(db, marks, image_ids)
    fingerprints.forget_fingerprints_of(db, image_ids)
    db.execute(f"INSERT OR REPLACE INTO removed(slot, version) "
               f"SELECT slot, ? FROM images WHERE image_id IN ({marks})", (version, *image_ids))
    db.execute(f"DELETE FROM images WHERE image_id IN ({marks})", image_ids)
    return read


def _swap_in_rebuild(db: sqlite3.Connection, version: int) -> None:
    """finish_rebuild's one transaction: live documents the rebuild did not write go (their slots to the kNN
    cache's `removed`), the rebuilt ones replace or join the rest, then its vector size and models."""
    gone = [r[0] for r in db.execute(
        "SELECT image_id FROM images WHERE image_id NOT IN (SELECT image_id FROM rebuild_images)")]
    for chunk in in_chunks(gone, 500):
        _forget_documents(db, chunk, version)
    last = ""
    while rows := db.execute(f"SELECT {DOC_COLUMNS}, fingerprint FROM rebuild_images WHERE image_id > ? "
                             "ORDER BY image_id LIMIT 2000", (last,)).fetchall():
        _write_docs(db, [_doc(row) for row in rows], version)
        last = rows[-1][0]
    size = _staged_size(db)
    if size:
        set_meta(db, META_VECTOR_SIZE, str(size))
    for key, value in db.execute("SELECT key, value FROM rebuild_meta").fetchall():
        set_meta(db, key, value)
    db.execute("DROP TABLE rebuild_images")
    db.execute("DROP TABLE rebuild_meta")


def write_names(db: sqlite3.Connection, paths_by_id: Sequence[tuple[str, str]]) -> None:
    """(image_id, relative_path) rows' words, replacing what their slots held (inside the caller's transaction)."""
    db.executemany("DELETE FROM names WHERE rowid = (SELECT slot FROM images WHERE image_id=?)",
                   [(image_id,) for image_id, _ in paths_by_id])
    db.executemany("INSERT INTO names(rowid, words) SELECT slot, ? FROM images WHERE image_id=?",
                   [(name_words(path), image_id) for image_id, path in paths_by_id])


def forget_names(db: sqlite3.Connection, marks: str, ids: Sequence[str]) -> None:
    db.execute(f"DELETE FROM names WHERE rowid IN (SELECT slot FROM images WHERE image_id IN ({marks}))", ids)


def _doc(row: tuple[Any, ...]) -> ImageDoc:
    (image_id, name, path, blob, sha, size, mtime, width, height, indexed_at, model_id, taken, source, fp) = row
    return ImageDoc(image_id, name, path, np.frombuffer(blob, np.float32).copy(), sha, size, mtime, width,
                    height, indexed_at, model_id, taken, source or "", fp or "")

"""The data folder's backup: a consistent copy of everything the embedded store keeps, made while the bot
and the indexer run, and its restore.

A backup is a folder (private: 0700, its files 0600), made beside its final name and renamed into place
when complete, so a folder of that name is always a whole backup:

    manifest.json                  findimage release, store schema, counts, when; each file's size and SHA-256
    findimage.sqlite               the archive's store
    vectors.json, vectors-*.faiss  its kNN snapshot, when there is one
    remembered/findimage.sqlite    the images remembered from channels
    remembered/channels.sqlite     their channels, postings and the journal of Slack events not yet applied
    indexer-state.json             the indexer's failed files and a refused removal

Each database is copied with SQLite's online backup API in one step: one read transaction, so the copy is
the database as of one commit, while the bot and the indexer go on writing (WAL readers never block
them). The archive's kNN snapshot is a cache of the vectors in SQLite, tagged with the write version it
holds; it is read before the database, so its version is never ahead of the copy and the restored
store applies the writes since, as every process opening it does. That spares a rebuild (minutes at a
million images). The remembered images' snapshot is not copied: it may still hold vectors deleted since
it was saved (erasing.py deletes it on every forget), and those stores are small enough to rebuild.

A restore checks everything before it changes anything: the manifest, each file's size and hash, SQLite's
`PRAGMA integrity_check`, and that no schema is newer than this release knows. It holds the data folder
alone (findimage.locks: refused while the bot, the indexer or a worker uses it), restores into a folder
whose store holds nothing, or with `force` moves the current files aside into `replaced-<time>/` first,
then opens the restored store, which migrates a backup of an older release.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from findimage import __version__
from findimage.errors import EXIT_REFUSED, FindimageError, StoreError, refuse_newer_schema
from findimage.locks import restoring_data_folder
from findimage.stores.embedded.schema import SCHEMA_VERSION, written
from findimage.stores.embedded.vector_index import SNAPSHOT_NAME, VectorIndex, fsync_path

MANIFEST = "manifest.json"
LAYOUT = 1  # of the backup folder itself
STORE_DB = "findimage.sqlite"
REMEMBERED = "remembered"
REMEMBERED_DB = f"{REMEMBERED}/findimage.sqlite"
CHANNELS_DB = f"{REMEMBERED}/channels.sqlite"
DATABASES = (STORE_DB, CHANNELS_DB, REMEMBERED_DB)  # the registry before its store: a posting forgotten
# between the two copies leaves neither its image nor, at most, more than its posting
SNAPSHOT_POINTER = "vectors.json"


class BackupRefused(FindimageError):
    """A backup that cannot be made, or restored, as asked; the message says what to do."""

    exit_code = EXIT_REFUSED


@dataclass(frozen=True)
class Counts:
    documents: int
    channels: int
    remembered: int

    def line(self) -> str:
        return (f"{self.documents:,} documents, {self.channels:,} remembered channel(s) with "
                f"{self.remembered:,} image(s)")


class FolderBackups:
    """`make` and `restore` for the data folder `data_dir`; `plain_files` are the small files beside the
    stores (replaced atomically by their writers, so a read is a whole version), e.g. indexer-state.json."""

    def __init__(self, data_dir: str | Path, plain_files: Sequence[str] = ()):
        self.data_dir = Path(data_dir)
        self.plain_files = tuple(plain_files)

    # ---- backup -------------------------------------------------------------------------------
    def make(self, target: str | None) -> list[str]:
        if not target:
            raise BackupRefused("Name the folder to make the backup in, e.g. `findimage backup "
                                "/var/backups/findimage/$(date +%F)`.")
        started = time.monotonic()
        dest = Path(target)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise BackupRefused(f"{dest} already exists: name a new folder for the backup.")
        if not (self.data_dir / STORE_DB).is_file():
            raise BackupRefused(f"There is no findimage store in {self.data_dir} to back up (FINDIMAGE_DATA_DIR).")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.parent / f".{dest.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        _private_dir(staging)
        try:
            files = self._copy_into(staging)
            counts = _counts(staging)
            schema, _ = _written_in(staging / STORE_DB)
            described = {name: _describe(staging / name) for name in files}
            manifest = {"layout": LAYOUT, "findimage": __version__, "store": "embedded", "schema": schema,
                        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "data_dir": str(self.data_dir.resolve()), "documents": counts.documents,
                        "remembered_channels": counts.channels, "remembered_images": counts.remembered,
                        "files": described}
            _write_private(staging / MANIFEST, json.dumps(manifest, indent=2).encode())
            _fsync_dir(staging)
            if dest.exists():
                dest.rmdir()  # the empty folder it was asked to fill
            os.replace(staging, dest)
            _fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        size = sum(f["bytes"] for f in described.values())
        return [f"backup of {self.data_dir} in {dest}: {counts.line()}; {size / 2**20:,.1f} MB in "
                f"{time.monotonic() - started:.1f} s (findimage {__version__}, store schema {schema})"]

    def _copy_into(self, staging: Path) -> list[str]:
        """Every file of the backup into `staging`; their names, relative to it."""
        names = self._copy_snapshot(staging)  # before the database: its version is then never ahead of the copy
        for name in DATABASES:
            if (self.data_dir / name).is_file():
                _copy_database(self.data_dir / name, staging / name)
                names.append(name)
        for name in self.plain_files:
            try:
                data = (self.data_dir / name).read_bytes()
            except FileNotFoundError:
                continue
            _write_private(staging / name, data)
            names.append(name)
        return names

    def _copy_snapshot(self, staging: Path) -> list[str]:
        """The archive's current kNN snapshot (pointer and index file), or nothing: a save may replace it
        meanwhile (the file named is then gone, and the copy skipped: the restored store rebuilds it)."""
        pointer = VectorIndex.snapshot_info(self.data_dir)
        if pointer is None:
            return []
        try:
            # The open file stays readable even if a save unlinks it now.
            with (self.data_dir / pointer["file"]).open("rb") as source:
                with _private_file(staging / pointer["file"]) as copy:
                    shutil.copyfileobj(source, copy, 1 << 20)
        except FileNotFoundError:
            (staging / pointer["file"]).unlink(missing_ok=True)
            return []
        _write_private(staging / SNAPSHOT_POINTER, json.dumps(pointer).encode())
        return [pointer["file"], SNAPSHOT_POINTER]

    # ---- restore ------------------------------------------------------------------------------
    def restore(self, source: str, force: bool = False) -> list[str]:
        src = Path(source)
        manifest = _read_manifest(src, self.plain_files)
        refuse_newer_schema(f"The backup in {src}", manifest.get("findimage"), manifest["schema"], SCHEMA_VERSION)
        _private_dir(self.data_dir)
        with restoring_data_folder(self.data_dir):
            staging = self.data_dir / f".restoring-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            _private_dir(staging)
            try:
                self._stage(src, manifest, staging)
                kept = self._clear(force)
                for name in manifest["files"]:
                    if "/" in name:
                        _private_dir(self.data_dir / name.split("/")[0])
                    os.replace(staging / name, self.data_dir / name)
                _fsync_dir(self.data_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            counts = self._open_restored()
        lines = [f"restored {counts.line()} into {self.data_dir} from {src} (made {manifest.get('made_at')} by "
                 f"findimage {manifest.get('findimage')})"]
        if kept:
            lines.append(f"the store it replaced is kept in {kept}: delete it once the restored one answers")
        return lines

    def _stage(self, src: Path, manifest: dict, staging: Path) -> None:
        """Every file of the backup copied into `staging`, each checked against the manifest and each
        database by SQLite; BackupRefused (naming the file) at the first that is not as it was made."""
        for name, expected in manifest["files"].items():
            where = src / name
            if not where.is_file():
                raise damaged(src, f"{name} is missing")
            (staging / name).parent.mkdir(mode=0o700, exist_ok=True)
            digest = hashlib.sha256()
            with where.open("rb") as source, _private_file(staging / name) as copy:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    copy.write(chunk)
                copy.flush()
                os.fsync(copy.fileno())
            size = (staging / name).stat().st_size
            if size != expected.get("bytes") or digest.hexdigest() != expected.get("sha256"):
                raise damaged(src, f"{name} is not the file the backup was made with ({size:,} bytes)")
            if name.endswith(".sqlite"):
                _check_database(src, name, staging / name)

    def _clear(self, force: bool) -> Path | None:
        """The data folder's store files out of the way: deleted if they hold nothing, else (with `force`)
        moved into `replaced-<time>/`, whose path is returned; refused without it."""
        present = [p for p in self._store_files() if p.exists()]
        if not present:
            return None
        held = _counts(self.data_dir)
        if held == Counts(0, 0, 0):
            for path in present:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            return None
        if not force:
            raise BackupRefused(f"{self.data_dir} already holds a store ({held.line()}): restore into an empty data "
                                "folder, or add --force to replace it (its files are then kept aside in "
                                f"{self.data_dir}/replaced-<time>/).")
        kept = self.data_dir / time.strftime("replaced-%Y%m%d-%H%M%S")
        while kept.exists():  # two restores within a second: neither overwrites what the other kept
            kept = kept.with_name(kept.name + "-1")
        _private_dir(kept)
        for path in present:
            os.replace(path, kept / path.name)
        return kept

    def _store_files(self) -> list[Path]:
        """What a store in the data folder consists of (SQLite's -wal and -shm included: a stale one left
        beside a restored database would be applied to it)."""
        folder = self.data_dir
        return [*(folder / f"{STORE_DB}{suffix}" for suffix in ("", "-wal", "-shm")),
                folder / SNAPSHOT_POINTER, *sorted(folder.glob("vectors-*.faiss*")), folder / REMEMBERED,
                *(folder / name for name in self.plain_files)]

    def _open_restored(self) -> Counts:
        """The restored stores opened as every process opens them (an older release's are migrated now)."""
        from findimage.stores.embedded.registry import EmbeddedRegistry
        from findimage.stores.embedded.store import EmbeddedStore

        store = EmbeddedStore(self.data_dir)
        try:
            documents = store.count()
        finally:
            store.close()
        if not (self.data_dir / REMEMBERED).is_dir():
            return Counts(documents, 0, 0)
        remembered, registry = EmbeddedStore(self.data_dir / REMEMBERED, erase_deleted=True), \
            EmbeddedRegistry(self.data_dir / REMEMBERED)
        try:
            return Counts(documents, len(registry.channels()), remembered.count())
        finally:
            remembered.close()
            registry.close()


def damaged(src: Path, what: str) -> BackupRefused:
    return BackupRefused(f"The backup in {src} is damaged ({what}): nothing was restored; restore another backup.")


def _read_manifest(src: Path, plain_files: Sequence[str]) -> dict:
    """The manifest, checked: its shape, and only names of files a backup holds (none outside the folder)."""
    if not (src / MANIFEST).is_file():
        raise BackupRefused(f"{src} is not a findimage backup (it has no {MANIFEST}): name a folder "
                            "`findimage backup` made.")
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise damaged(src, f"its {MANIFEST} cannot be read") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(files, dict) and manifest.get("store") == "embedded" and isinstance(manifest.get("schema"), int)
            and STORE_DB in files and all(isinstance(v, dict) for v in files.values())):
        raise damaged(src, f"its {MANIFEST} cannot be read")
    allowed = {*DATABASES, SNAPSHOT_POINTER, *plain_files}
    for name in files:
        if name not in allowed and not SNAPSHOT_NAME.fullmatch(name):
            raise damaged(src, f"its {MANIFEST} names {name!r}, which no backup holds")
    return manifest


def _check_database(src: Path, name: str, copy: Path) -> None:
    try:
        db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA integrity_check").fetchall()
            schema, written_by = written(db) if name != CHANNELS_DB else (0, None)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise damaged(src, f"{name} is not a readable SQLite database: {exc}") from None
    if result != [("ok",)]:
        problems = [line for (row,) in result for line in str(row).splitlines()]
        more = f", and {len(problems) - 1:,} more problem(s)" if len(problems) > 1 else ""
        raise damaged(src, f"SQLite finds {name} corrupt: {problems[0]}{more}")
    refuse_newer_schema(f"The backup in {src}", written_by, schema, SCHEMA_VERSION)


def _copy_database(path: Path, copy: Path) -> None:
    """`path` as of one commit into `copy` (one file, no WAL beside it), private."""
    copy.parent.mkdir(mode=0o700, exist_ok=True)
    source = sqlite3.connect(path, timeout=30)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)  # pages=-1: every page in one step, so one read transaction
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise StoreError(f"Could not copy {path} ({exc}): check the free space where the backup goes, "
                         "then run the backup again.") from exc
    finally:
        source.close()
    os.chmod(copy, 0o600)
    fsync_path(copy)


def _written_in(path: Path) -> tuple[int, str | None]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return written(db)
    finally:
        db.close()


def _counts(folder: Path) -> Counts:
    """Documents, remembered channels and images in the databases in `folder` (a backup or a data folder),
    read without opening (or creating) a store."""
    def count(name: str, table: str) -> int:
        path = folder / name
        if not path.is_file():
            return 0
        db = sqlite3.connect(path, timeout=30)
        try:
            return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:  # a database created but never written
            return 0
        finally:
            db.close()

    return Counts(count(STORE_DB, "images"), count(CHANNELS_DB, "channels"), count(REMEMBERED_DB, "images"))


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _private_file(path: Path) -> BinaryIO:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _write_private(path: Path, data: bytes) -> None:
    with _private_file(path) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fsync_path(path)

"""One indexing pass: bring the store in line with the archive, embedding only what is new."""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from findimage.imaging import DRAFT_MIN_SIDE, ImageError, Prepared, prepare_bytes
from findimage.records import FileState, ImageDoc, image_id_for
from findimage.store import META_IMAGE_MODEL, META_LAST_PASS, META_TEXT_MODEL, Store, StoreError, StoreUnavailable

from .scan import ArchiveFile, scan_archive

log = logging.getLogger(__name__)


class ModelChanged(Exception):
    pass


@dataclass
class PassSummary:
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    embedded: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    finished_at: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"added {self.added}, updated {self.updated}, moved {self.moved}, removed {self.removed}, "
                f"unchanged {self.unchanged}, failed {self.failed} in {self.seconds:.1f}s "
                f"({self.images_per_second:.1f} images/s)")

    def to_json(self) -> str:
        data = asdict(self)
        data["failures"] = data["failures"][:20]
        return json.dumps(data)


@dataclass
class Loaded:
    """A candidate file read from disk: its content hash and decoded picture, or why it failed."""

    file: ArchiveFile
    sha256: str = ""
    prepared: Prepared | None = None
    error: str | None = None


def read_and_decode(file: ArchiveFile, embedder=None) -> Loaded:
    """Read, hash and decode one file. With an embedder that offers it, the JPEG is drafted only down to
    the model's input side and downsized to it here, in the decode thread, as its processor would."""
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        return Loaded(file, error=f"cannot read: {exc.strerror}")
    loaded = Loaded(file, hashlib.sha256(data).hexdigest())
    shrink = getattr(embedder, "shrink", None)
    try:
        side = embedder.image_input_side() if shrink else None
        loaded.prepared = prepare_bytes(data, side or DRAFT_MIN_SIDE)
        if shrink:
            loaded.prepared.image = shrink(loaded.prepared.image)
    except ImageError as exc:
        loaded.error = str(exc)
    return loaded


class IndexPass:
    def __init__(self, store: Store, image_embedder, archive, batch_size: int = 32, text_model_id: str = "",
                 full: bool = False, progress: bool | None = None):
        self.store = store
        self.embedder = image_embedder
        self.archive = archive
        self.batch_size = batch_size
        self.text_model_id = text_model_id
        self.full = full
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.summary = PassSummary()

    def run(self) -> PassSummary:
        started = time.monotonic()
        self._check_model()
        if self.full:
            self.store.begin_rebuild()
        on_disk = scan_archive(self.archive)
        stored = self.store.file_states()
        candidates = self._candidates(on_disk, stored)
        gone = [state for path, state in stored.items() if path not in on_disk]
        self._index(candidates, stored, gone)
        # From here on every store call is retried while the store is down: the work is done, keep it.
        retry_while_unavailable(lambda: self.store.delete([state.image_id for state in gone]))
        self.summary.removed = len(gone) - self.summary.moved
        retry_while_unavailable(lambda: self.store.set_meta(META_IMAGE_MODEL, self.embedder.model_id))
        if self.text_model_id:
            retry_while_unavailable(lambda: self.store.set_meta(META_TEXT_MODEL, self.text_model_id))
        retry_while_unavailable(self.store.finish_rebuild if self.full else self.store.checkpoint)
        self.summary.seconds = time.monotonic() - started
        self.summary.finished_at = time.time()
        retry_while_unavailable(lambda: self.store.set_meta(META_LAST_PASS, self.summary.to_json()))
        return self.summary

    def _check_model(self) -> None:
        stored = self.store.get_meta(META_IMAGE_MODEL)
        if stored and stored != self.embedder.model_id and not self.full and self.store.count() > 0:
            raise ModelChanged(
                f"The index was built with the image model {stored}, but FINDIMAGE_IMAGE_MODEL is now "
                f"{self.embedder.model_id}. Run `findimage index --full` to re-embed the archive with it.")

    def _candidates(self, on_disk: dict[str, ArchiveFile], stored: dict[str, FileState]) -> list[ArchiveFile]:
        """Files that are new or whose size or modification time changed (no file is read to decide)."""
        if self.full:
            return sorted(on_disk.values(), key=lambda f: f.relative_path)
        candidates = []
        for path, file in on_disk.items():
            state = stored.get(path)
            if state and state.size == file.size and state.mtime == file.mtime:
                self.summary.unchanged += 1
            else:
                candidates.append(file)
        return sorted(candidates, key=lambda f: f.relative_path)

    def _index(self, candidates: list[ArchiveFile], stored: dict[str, FileState], gone: list[FileState]) -> None:
        gone_shas = Counter(state.sha256 for state in gone)
        seen_this_pass: dict[str, np.ndarray] = {}
        bar = tqdm(total=len(candidates), unit="img", disable=not self.progress, desc="indexing")
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            loaded = _prefetched(pool, candidates, self.batch_size * 2, self.embedder)
            for batch in _batches(loaded, self.batch_size):
                docs = self._embed_batch(batch, stored, gone_shas, seen_this_pass)
                self._store_batch(docs)
                bar.update(len(batch))
        bar.close()

    def _embed_batch(self, batch: list[Loaded], stored, gone_shas, seen_this_pass) -> list[tuple[ImageDoc, str]]:
        """Documents for a batch, each with its summary category; vectors reused wherever content is known."""
        usable = [item for item in batch if self._usable(item)]
        reusable = dict(seen_this_pass)
        if not self.full:
            unknown = {i.sha256 for i in usable} - reusable.keys()
            reusable.update(retry_while_unavailable(
                lambda: self.store.vectors_by_sha256(unknown, self.embedder.model_id)))
        fresh = [item for item in usable if item.sha256 not in reusable]
        # one file twice in a batch (duplicates) is embedded once
        unique = list({item.sha256: item for item in fresh}.values())
        if unique:
            vectors = self.embedder.embed_images([item.prepared.image for item in unique])
            reusable.update(zip((item.sha256 for item in unique), vectors))
            self.summary.embedded += len(unique)
        docs = []
        for item in usable:
            seen_this_pass[item.sha256] = reusable[item.sha256]
            category = self._category(item, stored.get(item.file.relative_path), gone_shas)
            docs.append((self._doc(item, reusable[item.sha256]), category))
        return docs

    def _store_batch(self, docs: list[tuple[ImageDoc, str]]) -> None:
        """Write a batch; documents the store rejects are reported as failed and retried next pass."""
        rejected: dict[str, str] = {}
        try:
            retry_while_unavailable(lambda: self.store.upsert([doc for doc, _ in docs]))
        except StoreError as exc:
            rejected = dict(exc.failures)
            for path, reason in exc.failures:
                log.warning("store rejected %s: %s", path, reason)
        for doc, category in docs:
            if doc.relative_path in rejected:
                self.summary.failed += 1
                self.summary.failures.append((doc.relative_path, f"store rejected it: {rejected[doc.relative_path]}"))
            else:
                setattr(self.summary, category, getattr(self.summary, category) + 1)

    def _usable(self, item: Loaded) -> bool:
        if item.error:
            self.summary.failed += 1
            self.summary.failures.append((item.file.relative_path, item.error))
            log.warning("skipped %s: %s", item.file.relative_path, item.error)
            return False
        return True

    def _category(self, item: Loaded, previous: FileState | None, gone_shas: Counter) -> str:
        if previous is None:
            if gone_shas[item.sha256] > 0:  # each vanished file explains one move
                gone_shas[item.sha256] -= 1
                return "moved"
            return "added"
        if previous.sha256 == item.sha256 and not self.full:
            return "unchanged"  # touched, same content
        return "updated"

    def _doc(self, item: Loaded, vector: np.ndarray) -> ImageDoc:
        file = item.file
        return ImageDoc(
            image_id=image_id_for(file.relative_path), image_name=file.path.name,
            relative_path=file.relative_path, image_embedding=np.asarray(vector, dtype=np.float32),
            sha256=item.sha256, size=file.size, mtime=file.mtime, width=item.prepared.width,
            height=item.prepared.height, indexed_at=time.time(), model_id=self.embedder.model_id)


# How long a pass waits for a store that went away mid-pass (e.g. Elasticsearch restarting) before it
# gives up; the next scheduled pass starts over from what was written.
RETRY_SECONDS = 600.0


def retry_while_unavailable(operation, give_up_after: float | None = None, first_wait: float = 1.0,
                            max_wait: float = 10.0):
    """Run a store call, retrying with exponential backoff (capped at max_wait) while the store is down.

    Store writes are idempotent (documents are keyed by path), so repeating one that failed halfway
    loses and duplicates nothing. After `give_up_after` seconds (RETRY_SECONDS) the error is raised.
    """
    deadline = time.monotonic() + (RETRY_SECONDS if give_up_after is None else give_up_after)
    wait, attempt = first_wait, 0
    while True:
        attempt += 1
        try:
            return operation()
        except StoreUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(wait, left)
            log.warning("%s Retrying in %.0fs (attempt %d).", exc, pause, attempt)
            time.sleep(pause)
            wait = min(max_wait, wait * 2)


def _prefetched(pool: ThreadPoolExecutor, files: list[ArchiveFile], lookahead: int, embedder) -> Iterator[Loaded]:
    """Read and decode ahead in threads while the caller runs the model on earlier files."""
    pending: deque = deque()
    remaining = iter(files)
    for file in remaining:
        pending.append(pool.submit(read_and_decode, file, embedder))
        if len(pending) >= lookahead:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(remaining, None)
        if nxt is not None:
            pending.append(pool.submit(read_and_decode, nxt, embedder))


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

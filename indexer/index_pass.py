"""One indexing pass: bring the store in line with the archive, embedding only what is new.

A pass never trusts an absence it cannot explain: a missing or empty archive root, a folder that could
not be listed, or a removal of more than FINDIMAGE_MAX_REMOVAL_FRACTION of the index changes nothing
(until confirmed with --allow-mass-removal), because re-embedding a large archive takes hours.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from tqdm import tqdm

from findimage.backends import text_model_id
from findimage.config import Settings
from findimage.errors import EXIT_REFUSED, FindimageError, check_image_model
from findimage.models.base import ImageEmbedder
from findimage.records import FileState, image_id_for
from findimage.stores.base import META_IMAGE_MODEL, META_LAST_PASS, META_TEXT_MODEL, Store

from .embedding import Embedding
from .outcome import Outcome
from .reading import fingerprint_file, taken_from_header
from .retry import retry_while_unavailable
from .scan import ArchiveFile, ArchiveUnavailable, Scan, scan_archive
from .state import FailedFile, IndexerState, PendingRemoval, load_state, save_state
from .text_stage import TextStage

log = logging.getLogger(__name__)
# Embedding elsewhere: (candidates, a check that raises once the pass must stop, the progress bar) -> outcomes
Distribute = Callable[[list[ArchiveFile], Callable[[], None], Any, bool], Iterable[Outcome]]  # files, stop, bar, full


def never() -> bool:
    return False


@dataclass(frozen=True)
class PassRequest:
    """How one pass is to run: `findimage index`'s options (the schedule asks for an ordinary pass), and
    `superseded`, asked before each batch and before anything is removed: True once another pass took this
    one's lease over (indexer.lock.HeldPass.superseded)."""

    full: bool = False  # a rebuild: every file embedded again, into a new index where the store has them
    allow_mass_removal: bool = False  # removals past FINDIMAGE_MAX_REMOVAL_FRACTION confirmed
    progress: bool | None = None  # progress bars (None: when stderr is a terminal)
    superseded: Callable[[], bool] = never


class PassSuperseded(FindimageError):
    """Another pass took this one's lease over (this one stalled past the expiry): it stops writing."""


class MassRemovalRefused(FindimageError):
    """A pass would remove too much of the index at once; the message says how to confirm it."""

    exit_code = EXIT_REFUSED


def mass_removal_sentence(count: int, indexed: int, fraction: float) -> str:
    return (f"Refused to remove {count:,} of the {indexed:,} indexed images (more than {fraction:.0%}): is the "
            "archive fully mounted? If these images were really deleted, run `findimage index "
            "--allow-mass-removal` to remove them from the index.")


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
    known_failed: int = 0  # files that failed before and have not changed: not read again
    kept_unlisted: int = 0  # documents under folders that could not be listed: kept
    removal_refused: int = 0  # removals held back (mass removal not confirmed)
    removal_sentence: str = ""
    upgraded: int = 0  # documents of an earlier version given dates and path words (no model call)
    fingerprinted: int = 0  # documents indexed before fingerprints were kept, given one (no model call)
    failing_files: int = 0  # files that cannot be indexed as they are now (this pass's and known ones)
    text_read: int = 0  # images whose text was read this pass (indexer.text_stage)
    text_reused: int = 0  # documents given the text stored for their content
    text_failed: int = 0  # images whose text could not be read (recorded, not failed files)
    text_timed_out: int = 0  # images whose reading timed out: read again on the next pass
    text_stopped: str = ""

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (f"added {self.added}, updated {self.updated}, moved {self.moved}, removed {self.removed}, "
                f"unchanged {self.unchanged}, failed {self.failed} in {self.seconds:.1f}s "
                f"({self.images_per_second:.1f} images/s)")
        if self.known_failed:
            text += f"; {self.known_failed} known bad file(s) skipped (see `findimage status`)"
        if self.kept_unlisted:
            text += f"; kept {self.kept_unlisted} document(s) under folders that could not be listed"
        if self.removal_refused:
            text += f"; {self.removal_refused} removal(s) refused"
        if self.upgraded:
            text += f"; upgraded {self.upgraded} document(s) with dates and name words (no re-embedding)"
        if self.fingerprinted:
            text += f"; fingerprinted {self.fingerprinted} indexed image(s) for near copies (no re-embedding)"
        if self.text_read or self.text_reused or self.text_failed or self.text_timed_out:
            text += (f"; text read in {self.text_read} image(s), reused for {self.text_reused}, "
                     f"failed in {self.text_failed}")
            if self.text_timed_out:
                text += f", timed out in {self.text_timed_out} (read again on the next pass)"
        if self.text_stopped:
            text += f"; reading text stopped: {self.text_stopped}"
        return text

    def to_json(self) -> str:
        data = asdict(self)
        data["failures"] = data["failures"][:20]
        return json.dumps(data)


class IndexPass:
    def __init__(self, store: Store, image_embedder: ImageEmbedder, settings: Settings,
                 asked: PassRequest = PassRequest(), distribute: Distribute | None = None):
        """A pass over FINDIMAGE_ARCHIVE into `store` (opened for writing), as `settings` and `asked` say. It
        embeds in this process, or where `distribute` sends the candidates (the queue's workers,
        indexer/queue.py); the text in images is read after the embeddings unless FINDIMAGE_OCR=off."""
        self.store = store
        self.embedder = image_embedder
        self.settings = settings
        self.archive = settings.archive
        self.full = asked.full
        self.allow_mass_removal = asked.allow_mass_removal
        self.progress = sys.stderr.isatty() if asked.progress is None else asked.progress
        self.superseded = asked.superseded
        self.distribute = distribute
        self.text = TextStage(store, settings, self.progress, self.superseded) if settings.ocr else None
        self.state = IndexerState()  # the last pass's failures and refused removal, read when the pass runs
        self.summary = PassSummary()
        self._moved_ids: set[str] = set()
        self._outdated: list[tuple[ArchiveFile, FileState]] = []  # unchanged, but indexed without a date
        self._rejected_by_store: set[str] = set()
        self._text_handled: set[str] = set()  # documents whose reading timed out beside the embedding

    def run(self) -> PassSummary:
        """One pass; ArchiveUnavailable or MassRemovalRefused (before any change) when the archive looks wrong.
        The indexer's state (indexer.state) is read first and written last, also when the pass stopped: its
        failures and a refused removal are kept."""
        self.state = load_state(self.settings.data_dir)
        try:
            return self._run()
        finally:
            if self.text is not None:
                self.text.close()
            save_state(self.settings.data_dir, self.state)

    def _run(self) -> PassSummary:
        started = time.monotonic()
        self._check_model()
        scan = scan_archive(self.archive)
        stored = self.store.file_states()
        self._refuse_empty_archive(scan, stored)
        gone = [state for path, state in stored.items() if path not in scan.files and not scan.hides(path)]
        self.summary.kept_unlisted = sum(1 for path in stored if path not in scan.files and scan.hides(path))
        if self.full:
            self._refuse_mass_removal(len(gone), len(stored), gone)  # a rebuild cannot hold removals back
            self.store.begin_rebuild()
        candidates = self._candidates(scan.files, stored)
        self._index(candidates, stored, gone)
        self._upgrade()
        self._add_fingerprints(scan)
        self._stop_if_superseded()
        # From here on every store call is retried while the store is down: the work is done, keep it.
        if self.text is not None:
            # Texts of moved or copied content, and on a rebuild of all unchanged content, are carried over
            # before the old documents go (and before a rebuilt index goes live): nothing is read again.
            self.text.reuse()
        self._remove(gone, len(stored))
        retry_while_unavailable(lambda: self.store.set_meta(META_IMAGE_MODEL, self.embedder.model_id))
        queried_with = text_model_id(self.settings)
        retry_while_unavailable(lambda: self.store.set_meta(META_TEXT_MODEL, queried_with))
        retry_while_unavailable(self.store.finish_rebuild if self.full else self.store.checkpoint)
        self._read_texts()
        self.summary.seconds = time.monotonic() - started
        self.summary.finished_at = time.time()
        self._remember_failures(scan)
        self.summary.failing_files = len(self.state.failed)
        retry_while_unavailable(lambda: self.store.set_meta(META_LAST_PASS, self.summary.to_json()))
        return self.summary

    def _read_texts(self) -> None:
        """The text stage, after the embeddings are live: it never fails the pass (a store that stays
        down stops it, and the next pass goes on where it stopped)."""
        if self.text is None:
            return
        try:
            self.text.run(self._text_handled)
            retry_while_unavailable(self.store.checkpoint)
        except Exception as exc:  # noqa: BLE001 - the pass's own work is done and kept
            log.warning("reading text stopped: %s", exc)
            self.text.summary.stopped = str(exc) or type(exc).__name__
        finally:
            self.text.close()
        found = self.text.summary
        self.summary.text_read += found.read
        self.summary.text_failed += found.failed
        self.summary.text_reused += found.reused
        self.summary.text_timed_out += found.timed_out
        self.summary.text_stopped = found.stopped

    def _stop_if_superseded(self) -> None:
        if self.superseded():  # the other pass redoes this work; two writers would race on the same documents
            raise PassSuperseded("Another indexing pass took over this index while this one was stalled; this one "
                                 "stops without removing anything.")

    def _check_model(self) -> None:
        if not self.full and self.store.count() > 0:  # an empty index takes any model
            check_image_model(self.store.get_meta(META_IMAGE_MODEL), self.embedder.model_id)

    # ---- what the archive may remove ------------------------------------------------------------
    def _refuse_empty_archive(self, scan: Scan, stored: dict[str, FileState]) -> None:
        if scan.files or scan.unlisted or not stored or self.allow_mass_removal:
            return
        raise ArchiveUnavailable(
            f"The archive folder {self.archive} holds no images, but the index has {len(stored):,}; nothing "
            "was changed. Is the archive mounted, and is FINDIMAGE_ARCHIVE right? If every image was really "
            "deleted, run `findimage index --allow-mass-removal`.")

    def _too_many(self, count: int, indexed: int) -> bool:
        return (not self.allow_mass_removal and count > 0 and indexed > 0
                and count > self.settings.max_removal_fraction * indexed)

    def _refuse_mass_removal(self, count: int, indexed: int, gone: list[FileState]) -> None:
        if self._too_many(count, indexed):
            self._hold_back(count, indexed, gone)
            raise MassRemovalRefused(mass_removal_sentence(count, indexed, self.settings.max_removal_fraction))

    def _hold_back(self, count: int, indexed: int, gone: list[FileState]) -> None:
        self.state.pending_removal = PendingRemoval(count, indexed, time.time(),
                                                    sorted(s.relative_path for s in gone)[:5])
        self.summary.removal_refused = count
        self.summary.removal_sentence = mass_removal_sentence(count, indexed, self.settings.max_removal_fraction)

    def _remove(self, gone: list[FileState], indexed: int) -> None:
        """Moved files' old documents always go (their vectors live on); other removals unless too many."""
        removals = [state for state in gone if state.image_id not in self._moved_ids]
        if self._too_many(len(removals), indexed):
            self._hold_back(len(removals), indexed, removals)
            doomed = list(self._moved_ids)
        else:
            self.state.pending_removal = None
            doomed = [state.image_id for state in gone]
            self.summary.removed = len(removals)
        retry_while_unavailable(lambda: self.store.delete(doomed))

    # ---- what to read ---------------------------------------------------------------------------
    def _candidates(self, on_disk: dict[str, ArchiveFile], stored: dict[str, FileState]) -> list[ArchiveFile]:
        """Files that are new or whose size or modification time changed (no file is read to decide).

        Files that failed before and have not changed since are skipped (and not logged again)."""
        if self.full:
            return sorted(on_disk.values(), key=lambda f: f.relative_path)
        candidates = []
        for path, file in on_disk.items():
            state = stored.get(path)
            if state and state.size == file.size and state.mtime == file.mtime:
                self.summary.unchanged += 1
                if not state.taken_source:
                    self._outdated.append((file, state))
            elif self.state.known_failure(path, file.size, file.mtime):
                self.summary.known_failed += 1
            else:
                candidates.append(file)
        return sorted(candidates, key=lambda f: f.relative_path)

    def _remember_failures(self, scan: Scan) -> None:
        """Failures of this pass replace earlier ones for the same files; files gone from disk are forgotten."""
        retried = set() if not self.full else set(self.state.failed)
        kept = {path: failed for path, failed in self.state.failed.items()
                if path not in retried and (self._still_there(scan, path, failed) or scan.hides(path))}
        for path, reason in self.summary.failures:
            file = scan.files.get(path)
            if file is not None and path not in self._rejected_by_store:  # the store may take it next time
                kept[path] = FailedFile(file.size, file.mtime, reason)
        self.state.failed = kept

    @staticmethod
    def _still_there(scan: Scan, path: str, failed: FailedFile) -> bool:
        file = scan.files.get(path)
        return file is not None and file.size == failed.size and file.mtime == failed.mtime

    # ---- upgrading documents of an earlier version --------------------------------------------------
    def _upgrade(self, batch_size: int = 500) -> None:
        """Dates (from file headers) and path words for unchanged documents that have none: no decode,
        no model call, vectors untouched."""
        for start in range(0, len(self._outdated), batch_size):
            chunk = self._outdated[start:start + batch_size]
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="header") as pool:
                taken = list(pool.map(lambda item: taken_from_header(item[0]), chunk))
            dates = [(state.image_id, file.relative_path, iso, source)
                     for (file, state), (iso, source) in zip(chunk, taken, strict=True)]
            retry_while_unavailable(partial(self.store.add_dates, dates))
            self.summary.upgraded += len(dates)

    def _add_fingerprints(self, scan: Scan, batch_size: int = 200) -> None:
        """Fingerprints for documents indexed before they were kept (or whose file could not be decoded for
        one): each unchanged file decoded once at a small size, in threads; no model call, vectors
        untouched. A file that cannot be decoded now stays without one and is tried on the next pass."""
        pending = [state for state in retry_while_unavailable(self.store.fingerprint_pending)
                   if (file := scan.files.get(state.relative_path)) is not None
                   and (file.size, file.mtime) == (state.size, state.mtime)]
        if not pending:
            return
        bar = tqdm(total=len(pending), unit="img", disable=not self.progress, desc="fingerprints")
        limits = self.settings.archive_images
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fingerprint") as pool:
            for start in range(0, len(pending), batch_size):
                self._stop_if_superseded()
                chunk = pending[start:start + batch_size]
                made = pool.map(lambda state: fingerprint_file(scan.files[state.relative_path], limits), chunk)
                # Only of the content the document holds (a file rewritten in place since is the next pass's).
                items = [(state.image_id, found[0], found[1]) for state, found in zip(chunk, made, strict=True)
                         if found is not None and found[0] == state.sha256]
                retry_while_unavailable(partial(self.store.set_fingerprints, items))
                self.summary.fingerprinted += len(items)
                bar.update(len(chunk))
        bar.close()

    # ---- embedding and writing ------------------------------------------------------------------
    def _index(self, candidates: list[ArchiveFile], stored: dict[str, FileState], gone: list[FileState]) -> None:
        """Embed and write the candidates (here, or on the queue's workers) and count what each became."""
        gone_by_sha: dict[str, list[str]] = {}
        for state in gone:
            gone_by_sha.setdefault(state.sha256, []).append(state.image_id)
        bar = tqdm(total=len(candidates), unit="img", disable=not self.progress, desc="indexing")
        if self.distribute is not None:
            outcomes = self.distribute(candidates, self._stop_if_superseded, bar, self.full)
        else:
            embedding = Embedding(self.store, self.embedder, self.settings, self.full,
                                  self.text.readers if self.text is not None else None)
            outcomes = (outcome for batch in embedding.run(candidates, self._stop_if_superseded)
                        for outcome in batch)
        for outcome in outcomes:
            self._count(outcome, stored, gone_by_sha)
            if self.distribute is None:  # the queue's progress bar counts buckets' files as they finish
                bar.update(1)
        bar.close()

    def _count_text(self, outcome: Outcome) -> None:
        if outcome.text == "read":
            self.summary.text_read += 1
        elif outcome.text == "reused":
            self.summary.text_reused += 1
        elif outcome.text == "failed":
            self.summary.text_failed += 1
        elif outcome.text == "timed_out":  # read again on the next pass, not by this pass's text stage
            self.summary.text_timed_out += 1
            self._text_handled.add(image_id_for(outcome.relative_path))

    def _count(self, outcome: Outcome, stored: dict[str, FileState], gone_by_sha: dict[str, list[str]]) -> None:
        """What the file became: failed, added, moved (its content vanished elsewhere), updated or unchanged;
        and its text, where it was read beside the embedding."""
        self.summary.embedded += outcome.embedded
        self._count_text(outcome)
        if outcome.error is not None:
            if outcome.rejected_by_store:  # the file is fine: the store may take it on the next pass
                self._rejected_by_store.add(outcome.relative_path)
            self.summary.failed += 1
            self.summary.failures.append((outcome.relative_path, outcome.error))
            return
        previous = stored.get(outcome.relative_path)
        if previous is None:
            if gone_by_sha.get(outcome.sha256):  # each vanished file explains one move
                self._moved_ids.add(gone_by_sha[outcome.sha256].pop())
                self.summary.moved += 1
            else:
                self.summary.added += 1
        elif previous.sha256 == outcome.sha256 and not self.full:
            self.summary.unchanged += 1  # touched, same content
        else:
            self.summary.updated += 1

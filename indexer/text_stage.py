"""Reading the text in images, after their embeddings are written and visible, so new images are searchable
by CLIP and by name first.

Text is read in reader children (findimage.models.reader_process.ReaderPool, FINDIMAGE_OCR_READERS of them,
one per core): a picture that crashes the engine or needs more memory than a child may take costs that
child, not the pass, and is recorded as failed (read again only when the file changes). A reading that timed
out is recorded as such and read again on later passes, up to MAX_ATTEMPTS readings in all.

Two places read:

- `ReadAlong`, beside the embedding (indexer.embedding, in the pass's process or on a queue's worker): the
  content a batch embedded is read while the next batches are embedded, from the small copy of the pixels
  decoded for the embedding (a photo without text is not decoded again). At most a batch's worth of
  pictures waits for the readers; what does not fit is left to the stage below, so the embedding never
  waits for reading.
- `TextStage`, the pass's last stage: every document whose text is still unknown (left over above, an index
  made with FINDIMAGE_OCR=off, readings that timed out on an earlier pass), each read from its file.

Each distinct content is read once: a copy or a moved file reuses the text stored for its content hash
(on a `--full` rebuild too, before the new index goes live, so nothing is read again). Texts are written in
small batches, so a pass killed while reading continues on the next one where this one stopped.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from tqdm import tqdm

from findimage.config import Settings
from findimage.models.reader_process import ArchivePicture, ReaderPool, ReadingLimits
from findimage.records import FileState, ReadText, image_id_for
from findimage.stores.base import Store

from .outcome import Outcome
from .reading import Loaded, archive_root, batches
from .retry import retry_while_unavailable

log = logging.getLogger(__name__)
BATCH = 16  # texts per write: what a killed pass reads again at most
LOOKUP = 500  # contents looked up at once for a stored text
ROUND = 50_000  # pending documents fetched at once (a round is read before the next is fetched)
AHEAD = 4  # pictures submitted per reader ahead of the one being written (the readers never wait for the stage)
# Pictures read along an embedding waiting for the readers at most (each a small copy, ~230 kB: ~15 MB), or
# two batches where batches are larger; new content beyond is left to the text stage.
ALONG = 64
# Readings of one content while they time out, the first included. A timeout is often the machine's fault
# (busy with a pass's embeddings or another process), not the picture's, so the next passes try again; a
# picture that hangs the reader every time costs one timeout per pass, three in all, and is then recorded as
# failed like a crash (read again only when its file changes).
MAX_ATTEMPTS = 3


@dataclass
class TextSummary:
    read: int = 0  # images whose text was read (lines or none)
    reused: int = 0  # copies, moved or rebuilt documents given the text stored for their content
    failed: int = 0  # images whose reading failed, or timed out for the last time (read again when they change)
    timed_out: int = 0  # images whose reading timed out, read again on the next pass
    failures: list[tuple[str, str]] = field(default_factory=list)
    stopped: str = ""  # why the stage stopped before the end ("" if it did not)

    def count(self, relative_path: str, text: ReadText) -> None:
        """One content's reading, counted and logged."""
        if text.state == "read":
            self.read += 1
        elif text.state == "timed_out":
            self.timed_out += 1
        else:
            self.failed += 1
            self.failures.append((relative_path, text.reason))
        logged(relative_path, text)


def logged(relative_path: str, text: ReadText) -> None:
    """A reading that failed or timed out, in the log of the process that read it."""
    if text.state == "timed_out":
        log.warning("reading the text of %s timed out (reading %d of %d): %s", relative_path, text.attempts,
                    MAX_ATTEMPTS, text.reason)
    elif text.state == "failed":
        log.warning("could not read the text of %s: %s", relative_path, text.reason)


def settled(text: ReadText, attempts: int) -> ReadText:
    """A reading as it is kept: its attempts, and failed once it timed out MAX_ATTEMPTS times."""
    if text.state == "timed_out" and attempts >= MAX_ATTEMPTS:
        return replace(text, state="failed", reason=f"{text.reason} ({attempts} times)", attempts=attempts)
    return replace(text, attempts=attempts)


class Readers:
    """The reader children of a pass or of a worker (started on the first picture, one pool for the whole
    process's reading), reading archive images as the scan saw them."""

    def __init__(self, settings: Settings):
        self.limits = ReadingLimits.of(settings)
        self._pool: ReaderPool | None = None

    @property
    def ahead(self) -> int:
        """Pictures worth submitting before the first answer is waited for: every reader busy, and the next
        pictures already waiting for them."""
        return AHEAD * max(1, self.limits.readers)

    def submit(self, picture: ArchivePicture) -> Future[ReadText]:
        if self._pool is None:
            self._pool = ReaderPool(self.limits)
        return self._pool.submit(picture)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


@dataclass
class _Along:
    """One embedded batch: its outcomes (as the embedding gave them) and its new contents' readings."""

    outcomes: list[Outcome]
    readings: dict[str, Future[ReadText]]  # by sha256


class ReadAlong:
    """Reads the text of the content an embedding embedded while it embeds the next batches. A batch's outcomes
    are handed back, in order, once its readings are done and written, each outcome saying what became of
    its file's text (`Outcome.text`). Only content new to the index is read here (a vector reused means a
    text stored or pending already); at most ALONG pictures (or two batches) wait for the readers, and new
    content beyond that is left to the text stage rather than holding the embedding up."""

    def __init__(self, store: Store, readers: Readers, batch_size: int):
        self.store = store
        self.readers = readers
        self.limit = max(ALONG, 2 * batch_size)
        self._batches: deque[_Along] = deque()
        self._waiting = 0  # readings submitted and not yet written

    def add(self, loaded: list[Loaded], outcomes: list[Outcome]) -> None:
        readings: dict[str, Future[ReadText]] = {}
        for item, outcome in zip(loaded, outcomes, strict=True):
            if not outcome.embedded or outcome.error is not None or item.copy is None or item.prepared is None:
                continue
            if self._waiting >= self.limit:
                break  # left to the text stage: the embedding goes on
            file = item.file
            readings[outcome.sha256] = self.readers.submit(ArchivePicture(
                str(archive_root(file)), file.relative_path, file.size, file.mtime, item.copy,
                (item.prepared.width, item.prepared.height)))
            self._waiting += 1
        self._batches.append(_Along(outcomes, readings))

    def done(self, wait: bool = False) -> Iterator[list[Outcome]]:
        """The outcomes of the batches whose readings are all done (with `wait`: of every batch), their texts
        written first."""
        while self._batches and (wait or all(f.done() for f in self._batches[0].readings.values())):
            yield self._written(self._batches.popleft())

    def _written(self, batch: _Along) -> list[Outcome]:
        outcomes: list[Outcome] = []
        items: list[tuple[str, str, ReadText]] = []
        texts = {sha256: settled(future.result(), 1) for sha256, future in batch.readings.items()}
        self._waiting -= len(texts)
        first: set[str] = set()
        for outcome in batch.outcomes:
            text = texts.get(outcome.sha256) if outcome.error is None else None
            if text is None:
                outcomes.append(outcome)
                continue
            items.append((image_id_for(outcome.relative_path), outcome.sha256, text))
            if outcome.sha256 in first:  # a copy in the same batch
                outcomes.append(replace(outcome, text="reused"))
            else:
                first.add(outcome.sha256)
                logged(outcome.relative_path, text)
                outcomes.append(replace(outcome, text=text.state))
        for start in range(0, len(items), BATCH):
            retry_while_unavailable(partial(self.store.set_texts, items[start:start + BATCH]))
        return outcomes


class TextStage:
    def __init__(self, store: Store, settings: Settings, progress: bool = False,
                 superseded: Callable[[], bool] = lambda: False):
        self.store = store
        self.archive = Path(settings.archive)
        self.readers = Readers(settings)
        self.progress = progress
        self.superseded = superseded
        self.summary = TextSummary()
        self._timed_out: dict[str, int] = {}  # readings of a content that timed out before, by sha256

    def reuse(self) -> None:
        """Give documents without text the text stored for their content, reading nothing (before the old
        documents of moved files go, and before a rebuilt index goes live)."""
        self._give_known(retry_while_unavailable(partial(self.store.text_pending, ROUND)))

    def run(self, handled: Iterable[str] = ()) -> TextSummary:
        """Read every document whose text is not known yet, a round of pending documents at a time (each
        round fetched once), except those `handled` already in this pass (their reading timed out beside
        the embedding: read again on the next pass); never raises for a picture."""
        done, total = retry_while_unavailable(self.store.text_status)
        if done >= total:
            return self.summary
        handled = set(handled)  # a reading the store did not keep (its file changed) is not retried here
        with tqdm(total=total - done, desc="reading text", unit="img", disable=not self.progress) as bar:
            while pending := [f for f in retry_while_unavailable(partial(self.store.text_pending, ROUND))
                              if f.image_id not in handled]:
                handled.update(f.image_id for f in pending)
                unread = self._give_known(pending)
                bar.update(len(pending) - len(unread))
                for items in batches(self._read(unread), BATCH):
                    retry_while_unavailable(partial(self.store.set_texts, items))
                    bar.update(len(items))
                    if self.superseded():
                        self.summary.stopped = "another pass took over the index"
                        return self.summary
        return self.summary

    def close(self) -> None:
        """Stop the reader children (pictures not started are dropped)."""
        self.readers.close()

    def _give_known(self, pending: list[FileState]) -> list[FileState]:
        """Stores the known texts of `pending` documents' contents; the documents left to read (those whose
        content's reading timed out among them, its attempts noted)."""
        unread: list[FileState] = []
        for start in range(0, len(pending), LOOKUP):
            chunk = pending[start:start + LOOKUP]
            known = retry_while_unavailable(partial(self.store.texts_by_sha256, {f.sha256 for f in chunk}))
            for sha256, text in list(known.items()):
                if text.state == "timed_out":
                    self._timed_out[sha256] = text.attempts
                    del known[sha256]
            given = [(f.image_id, f.sha256, known[f.sha256]) for f in chunk if f.sha256 in known]
            if given:
                retry_while_unavailable(partial(self.store.set_texts, given))
                self.summary.reused += len(given)
            unread += [f for f in chunk if f.sha256 not in known]
        return unread

    def _read(self, unread: list[FileState]) -> Iterator[tuple[str, str, ReadText]]:
        """(image_id, sha256, reading) of each document, in order, read by the readers `ahead` at a time;
        copies (the same content) are read once."""
        submitted: dict[str, Future[ReadText]] = {}
        answered: dict[str, ReadText] = {}
        waiting: deque[FileState] = deque()
        for state in unread:
            if state.sha256 not in submitted and state.sha256 not in answered:
                submitted[state.sha256] = self.readers.submit(ArchivePicture(
                    str(self.archive), state.relative_path, state.size, state.mtime))
            waiting.append(state)
            while len(waiting) >= self.readers.ahead:
                yield self._answer(waiting.popleft(), submitted, answered)
        while waiting:
            yield self._answer(waiting.popleft(), submitted, answered)

    def _answer(self, state: FileState, submitted: dict[str, Future[ReadText]],
                answered: dict[str, ReadText]) -> tuple[str, str, ReadText]:
        text = answered.get(state.sha256)
        if text is not None:  # a copy of content read in this round
            self.summary.reused += 1
        else:
            text = settled(submitted.pop(state.sha256).result(), self._timed_out.get(state.sha256, 0) + 1)
            answered[state.sha256] = text
            self.summary.count(state.relative_path, text)
        return state.image_id, state.sha256, text

"""Reading the text in images: the indexing pass's last stage, after its embeddings are written and
visible, so new images are searchable by CLIP and by name first.

Each distinct content is read once: a copy or a moved file reuses the text stored for its content hash
(on a `--full` rebuild too, before the new index goes live, so nothing is read again). Reading happens in
a child process (findimage.models.reader_process): a picture that crashes the engine or needs more memory
than the child may take costs that child, not the pass, and is recorded as failed (read again only when the
file changes). A reading that timed out is recorded as such and read again on later passes, up to
MAX_ATTEMPTS readings in all. Texts are written in small batches, so a pass killed here continues on the
next one where this one stopped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from tqdm import tqdm

from findimage.archive_files import ArchiveFileRefused, Indexed, read_archive_file
from findimage.config import Settings
from findimage.models.reader_process import ReaderProcess, ReadingLimits
from findimage.records import FileState, ReadText
from findimage.stores.base import Store

from .retry import retry_while_unavailable

log = logging.getLogger(__name__)
BATCH = 16  # texts per write: what a killed pass reads again at most
LOOKUP = 500  # contents looked up at once for a stored text
ROUND = 50_000  # pending documents fetched at once (a round is read before the next is fetched)
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


class TextStage:
    def __init__(self, store: Store, settings: Settings, progress: bool = False,
                 superseded: Callable[[], bool] = lambda: False):
        self.store = store
        self.archive = Path(settings.archive)
        self.limits = ReadingLimits.of(settings)
        self.progress = progress
        self.superseded = superseded
        self.summary = TextSummary()
        self._timed_out: dict[str, int] = {}  # readings of a content that timed out before, by sha256

    def reuse(self) -> None:
        """Give documents without text the text stored for their content, reading nothing (before the old
        documents of moved files go, and before a rebuilt index goes live)."""
        self._give_known(retry_while_unavailable(partial(self.store.text_pending, ROUND)))

    def run(self) -> TextSummary:
        """Read every document whose text is not known yet, a round of pending documents at a time (each
        round fetched once); never raises for a picture."""
        done, total = retry_while_unavailable(self.store.text_status)
        if done >= total:
            return self.summary
        reader = ReaderProcess(self.limits)
        handled: set[str] = set()  # a reading the store did not keep (its file changed) is not retried here
        try:
            with tqdm(total=total - done, desc="reading text", unit="img", disable=not self.progress) as bar:
                while pending := [f for f in retry_while_unavailable(partial(self.store.text_pending, ROUND))
                                  if f.image_id not in handled]:
                    handled.update(f.image_id for f in pending)
                    unread = self._give_known(pending)
                    bar.update(len(pending) - len(unread))
                    for start in range(0, len(unread), BATCH):
                        items = self._read(unread[start:start + BATCH], reader)
                        retry_while_unavailable(partial(self.store.set_texts, items))
                        bar.update(len(items))
                        if self.superseded():
                            self.summary.stopped = "another pass took over the index"
                            return self.summary
        finally:
            reader.close()
        return self.summary

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

    def _read(self, batch: list[FileState], reader: ReaderProcess) -> list[tuple[str, str, ReadText]]:
        items: list[tuple[str, str, ReadText]] = []
        by_content: dict[str, ReadText] = {}  # copies within the batch are read once
        for state in batch:
            text = by_content.get(state.sha256)
            if text is None:
                text = self._read_one(state, reader)
                by_content[state.sha256] = text
                if text.state == "read":
                    self.summary.read += 1
                elif text.state == "timed_out":
                    self.summary.timed_out += 1
                    log.warning("reading the text of %s timed out (reading %d of %d): %s", state.relative_path,
                                text.attempts, MAX_ATTEMPTS, text.reason)
                else:
                    self.summary.failed += 1
                    self.summary.failures.append((state.relative_path, text.reason))
                    log.warning("could not read the text of %s: %s", state.relative_path, text.reason)
            else:
                self.summary.reused += 1
            items.append((state.image_id, state.sha256, text))
        return items

    def _read_one(self, state: FileState, reader: ReaderProcess) -> ReadText:
        try:
            data = read_archive_file(self.archive, state.relative_path, self.limits.budget,
                                     Indexed(state.size, state.mtime))
        except ArchiveFileRefused as exc:
            return ReadText("failed", reason=f"cannot read: {exc}")
        text = reader.read(data)
        attempts = self._timed_out.get(state.sha256, 0) + 1
        if text.state == "timed_out" and attempts >= MAX_ATTEMPTS:
            return replace(text, state="failed", reason=f"{text.reason} ({attempts} times)",
                                       attempts=attempts)
        return replace(text, attempts=attempts)

"""Files to stored documents: read and decode ahead in threads, reuse the vectors of known content, embed
the rest in batches, write them, and read the text of what was embedded while the next batches are embedded
(indexer.text_stage.ReadAlong). The one way a pass embeds, in its own process or on a queue's worker
(indexer/queue.py); what each file became is reported back, and the pass counts it (indexer/index_pass.py).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from findimage.config import Settings
from findimage.errors import StoreError
from findimage.models.base import ImageEmbedder
from findimage.records import ImageDoc, image_id_for
from findimage.stores.base import Store

from .outcome import Outcome
from .reading import Loaded, batches, prefetched, read_and_decode
from .retry import retry_while_unavailable
from .scan import ArchiveFile
from .text_stage import ReadAlong, Readers

log = logging.getLogger(__name__)


@dataclass
class Embedding:
    store: Store
    embedder: ImageEmbedder
    settings: Settings  # its batches (FINDIMAGE_BATCH_SIZE), an archive image's limits
    full: bool = False  # a rebuild: every file embedded again, no vector reused from the index
    # Where the text of what is embedded is read along (None: not here; a rebuild reuses the texts stored
    # for its content, and the pass's text stage reads the rest).
    readers: Readers | None = None

    def run(self, files: list[ArchiveFile], stop: Callable[[], None] = lambda: None) -> Iterator[list[Outcome]]:
        """The outcomes batch by batch, each batch written (and its text, where read along) before it is
        yielded; `stop` is called before each batch (it raises to end the work)."""
        seen: dict[str, np.ndarray] = {}  # content embedded (or found) in this run
        size = self.settings.batch_size
        along = ReadAlong(self.store, self.readers, size) if self.readers is not None and not self.full else None
        decode = partial(read_and_decode, embedder=self.embedder, limits=self.settings.archive_images,
                         keep_copy=along is not None)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            for batch in batches(prefetched(pool, files, size * 2, decode), size):
                stop()
                outcomes = self._batch(batch, seen)
                if along is None:
                    yield outcomes
                else:
                    along.add(batch, outcomes)
                    yield from along.done()
        if along is not None:
            yield from along.done(wait=True)

    def _batch(self, batch: list[Loaded], seen: dict[str, np.ndarray]) -> list[Outcome]:
        failed = {item.file.relative_path: item.error for item in batch if item.error}
        for path, error in failed.items():
            log.warning("skipped %s: %s", path, error)
        usable = [item for item in batch if not item.error]
        reusable = dict(seen)
        if not self.full:
            unknown = {i.sha256 for i in usable} - reusable.keys()
            reusable.update(retry_while_unavailable(
                lambda: self.store.vectors_by_sha256(unknown, self.embedder.model_id)))
        # one content twice in a batch (duplicates) is embedded once
        unique = list({item.sha256: item for item in usable if item.sha256 not in reusable}.values())
        if unique:
            vectors = self.embedder.embed_images([item.picture.image for item in unique])
            reusable.update(zip((item.sha256 for item in unique), vectors, strict=True))
        docs = []
        for item in usable:
            seen[item.sha256] = reusable[item.sha256]
            docs.append(self._doc(item, reusable[item.sha256]))
        rejected = self._write(docs)
        failed.update(rejected)
        ran = {item.file.relative_path for item in unique}
        paths = [item.file.relative_path for item in batch]
        return [Outcome(path, item.sha256, failed.get(path), path in ran, path in rejected)
                for path, item in zip(paths, batch, strict=True)]

    def _write(self, docs: list[ImageDoc]) -> dict[str, str]:
        """Write the documents; those the store rejects, with why (retried next pass)."""
        if not docs:
            return {}
        try:
            retry_while_unavailable(lambda: self.store.upsert(docs))
        except StoreError as exc:
            if not exc.failures:
                raise  # the whole write failed (e.g. disk full): not a per-document rejection
            for path, reason in exc.failures:
                log.warning("store rejected %s: %s", path, reason)
            return {path: f"store rejected it: {reason}" for path, reason in exc.failures}
        return {}

    def _doc(self, item: Loaded, vector: np.ndarray) -> ImageDoc:
        file = item.file
        return ImageDoc(
            image_id=image_id_for(file.relative_path), image_name=file.path.name,
            relative_path=file.relative_path, image_embedding=np.asarray(vector, dtype=np.float32),
            sha256=item.sha256, size=file.size, mtime=file.mtime, width=item.picture.width,
            height=item.picture.height, indexed_at=time.time(), model_id=self.embedder.model_id,
            taken=item.taken[0] or None, taken_source=item.taken[1], fingerprint=item.fingerprint)

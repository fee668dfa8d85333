"""The indexer's metrics: passes and what they did, the store's size and unread text, the workers' buckets.

Served on FINDIMAGE_METRICS_PORT by `findimage schedule` and `findimage worker` (findimage.observability).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from findimage.backends import open_store
from findimage.config import Settings
from findimage.observability import Ready, counter, gauge, probe_store
from findimage.stores.base import Store

from .index_pass import PassSummary

log = logging.getLogger(__name__)

PASS_OUTCOMES = ("completed", "refused", "failed", "skipped")
IMAGE_RESULTS = ("embedded", "failed", "removed")

PASSES = counter("findimage_index_passes", "Indexing passes by how they ended (skipped: another pass was running, "
                 "or the lease could not be taken)", outcome=PASS_OUTCOMES)
IMAGES = counter("findimage_index_images", "Images of completed passes: embedded by the model, failed, removed",
                 result=IMAGE_RESULTS)
LAST_PASS_IMAGES = gauge("findimage_index_last_pass_images", "The last completed pass's images: embedded, failed, "
                         "removed", mode="mostrecent", result=IMAGE_RESULTS)
LAST_PASS_FINISHED = gauge("findimage_index_last_pass_finished_timestamp_seconds",
                           "When the last completed pass finished (Unix time)", mode="mostrecent")
LAST_PASS_SECONDS = gauge("findimage_index_last_pass_duration_seconds", "How long the last completed pass took",
                          mode="mostrecent")
DOCUMENTS = gauge("findimage_index_documents", "Documents in the store", mode="mostrecent")
TEXT_BACKLOG = gauge("findimage_index_text_backlog", "Documents whose text has not been read yet (0 with "
                     "FINDIMAGE_OCR=off)", mode="mostrecent")
BUCKETS = counter("findimage_worker_buckets", "Queued buckets this worker finished, by outcome (failed: refused, "
                  "or given up after a worker stopped on it too often)", outcome=("done", "failed"))


def record_pass(summary: PassSummary) -> None:
    """A completed pass's summary, as the metrics show it."""
    PASSES.labels(outcome="completed").inc()
    for result, count in (("embedded", summary.embedded), ("failed", summary.failed), ("removed", summary.removed)):
        IMAGES.labels(result=result).inc(count)
        LAST_PASS_IMAGES.labels(result=result).set(count)
    LAST_PASS_FINISHED.labels().set(summary.finished_at)
    LAST_PASS_SECONDS.labels().set(summary.seconds)


def record_store(store: Store, ocr: bool) -> None:
    """The store's document count and its documents whose text is not read yet."""
    read, total = store.text_status()
    DOCUMENTS.labels().set(total)
    TEXT_BACKLOG.labels().set(total - read if ocr else 0)


def readiness_probe(settings: Settings, store: Store | None = None) -> Callable[[], Ready]:
    """Ready when the archive is mounted and the store counts; each probe renews the store's gauges.
    Without `store` (the scheduler's, between passes) the probe opens a reader of its own once."""
    opened: list[Store] = [store] if store is not None else []

    def probe() -> Ready:
        if not opened:
            opened.append(open_store(settings))
        ready = probe_store(opened[0].count, settings.archive)
        if ready.ok:
            try:
                record_store(opened[0], settings.ocr)
            except Exception as exc:  # the count answered: ready all the same
                log.debug("the store's text status is not known (%s)", exc)
        return ready

    return probe

"""Entry points of the indexer: one pass now, or passes on a schedule."""
from __future__ import annotations

import logging

from findimage import embedders
from findimage.imaging import set_pixel_limit
from findimage.store import open_store

from .index_pass import IndexPass, PassSummary
from .lock import pass_lock
from .schedule import run_locked_pass, run_schedule

log = logging.getLogger(__name__)


def _one_pass(settings, full: bool = False, progress: bool | None = None) -> PassSummary:
    set_pixel_limit(settings.max_image_pixels)
    store = open_store(settings)
    try:
        text_model = settings.infer_model_id if settings.text_embedder == "elasticsearch" else settings.text_model
        return IndexPass(store, embedders.image_embedder(settings), settings.archive, settings.batch_size,
                         text_model_id=embedders.model_fingerprint(text_model), full=full,
                         progress=progress).run()
    finally:
        store.close()


def index_once(settings, full: bool = False, progress: bool | None = None) -> PassSummary:
    """One pass, refused (AlreadyRunning) while another process is indexing the same data."""
    with pass_lock(settings.data_dir):
        return _one_pass(settings, full, progress)


def schedule(settings) -> None:
    def scheduled_pass():
        try:
            summary = _one_pass(settings, progress=False)
            log.info("pass done: %s", summary.line())
            return summary
        except Exception:  # one bad pass (store down, model error) must not end the schedule
            log.exception("indexing pass failed; the next pass will retry")
            return None

    run_schedule(settings.data_dir, settings.index_interval_minutes, scheduled_pass)


__all__ = ["index_once", "schedule", "run_locked_pass"]

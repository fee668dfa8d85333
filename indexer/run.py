"""Entry points of the indexer: one pass now, or passes on a schedule."""
from __future__ import annotations

import contextlib
import logging
import sys

from findimage import logs
from findimage.backends import image_embedder, open_store, text_model_id, using_store
from findimage.config import Settings
from findimage.models.reader_process import ReadingLimits
from findimage.observability import Readiness, serve_monitoring
from findimage.stores.base import PassLease

from .index_pass import IndexPass, MassRemovalRefused, PassSummary
from .lock import pass_guard, taken_over
from .metrics import PASSES, readiness_probe, record_pass, record_store
from .scan import ArchiveUnavailable
from .schedule import run_schedule
from .state import load_state, save_state
from .text_stage import TextStage

log = logging.getLogger(__name__)
PASS_ID_CHARS = 12


def named_pass() -> contextlib.AbstractContextManager[None]:
    """The log lines of one pass, from its lock to its summary, name it (pass_id: findimage.logs), also
    those of its buckets on the queue's workers (indexer.queue)."""
    return logs.ids(pass_id=logs.new_id(PASS_ID_CHARS))


def _one_pass(settings: Settings, lease: PassLease | None, full: bool = False, progress: bool | None = None,
              allow_mass_removal: bool = False) -> PassSummary:
    """One pass under `lease` (pass_guard's), which it stops writing under once another pass took it."""
    state = load_state(settings.data_dir)
    store = open_store(settings, writer=True)
    shown = sys.stderr.isatty() if progress is None else progress
    text = TextStage(store, settings.archive, ReadingLimits.of(settings), progress=shown,
                     superseded=taken_over(lease)) if settings.ocr else None
    distribute = None
    embedder = image_embedder(settings)
    if settings.queue_url:
        from .queue import Planner

        planner = Planner(settings, embedder.model_id, store.rebuild_target)
        if planner.workers():
            distribute = planner
        else:  # buckets nobody takes would wait for ever: this pass embeds here, the next asks again
            log.warning("no `findimage worker` with the image model %s answers on the queue; this pass embeds "
                        "in its own process", embedder.model_id)
    try:
        summary = IndexPass(store, embedder, settings.archive, settings.batch_size,
                            text_model_id=text_model_id(settings), full=full,
                            progress=progress, state=state, allow_mass_removal=allow_mass_removal,
                            max_removal_fraction=settings.max_removal_fraction,
                            max_pixels=settings.max_image_pixels, superseded=taken_over(lease),
                            decode_budget=settings.decode_budget_bytes, text=text, distribute=distribute).run()
        record_pass(summary)
        try:
            record_store(store, settings.ocr)
        except Exception as exc:  # the pass is done: its metrics are not worth failing it
            log.warning("the store's counts after the pass are not known (%s)", exc)
        return summary
    finally:
        store.close()
        save_state(settings.data_dir, state)  # failures and a refused removal, also when the pass stopped


def index_once(settings: Settings, full: bool = False, progress: bool | None = None,
               allow_mass_removal: bool = False) -> PassSummary:
    """One pass, refused (AlreadyRunning) while another process is indexing the same data or index."""
    with named_pass(), using_store(settings), pass_guard(settings) as lease:
        return _one_pass(settings, lease, full, progress, allow_mass_removal)


def work(settings: Settings) -> None:
    """`findimage worker`: embed the buckets planners queue (FINDIMAGE_QUEUE_URL), until stopped."""
    from .queue import serve

    if not settings.uses_elasticsearch:
        log.warning("the embedded store is a file on this machine: workers must run here too (workers on "
                    "several hosts need Elasticsearch)")
    readiness = Readiness()  # ready once its model is loaded and the store answers
    monitoring = serve_monitoring(settings, readiness)
    try:
        with using_store(settings):
            store = open_store(settings, writer=True)
            serve(settings, store, image_embedder(settings),
                  loaded=lambda: readiness.watch(readiness_probe(settings, store)))
    finally:
        if monitoring is not None:
            monitoring.close()


def schedule(settings: Settings) -> None:
    def scheduled_pass(lease: PassLease | None) -> PassSummary | None:
        try:
            summary = _one_pass(settings, lease, progress=False)
        except (ArchiveUnavailable, MassRemovalRefused) as exc:  # nothing changed; the next pass looks again
            log.error("indexing pass refused: %s", exc)
            PASSES.labels(outcome="refused").inc()
            return None
        except Exception:  # one bad pass (store down, model error) must not end the schedule
            log.exception("indexing pass failed; the next pass will retry")
            PASSES.labels(outcome="failed").inc()
            return None
        log.info("pass done: %s", summary.line())
        if summary.removal_sentence:
            log.error("%s", summary.removal_sentence)
        return summary

    def named(lease: PassLease | None) -> PassSummary | None:
        with named_pass():
            return scheduled_pass(lease)

    readiness = Readiness(readiness_probe(settings))  # between passes too: the archive, the store
    monitoring = serve_monitoring(settings, readiness)
    try:
        with using_store(settings):
            run_schedule(settings.data_dir, settings.index_interval_minutes, named, lambda: pass_guard(settings))
    finally:
        if monitoring is not None:
            monitoring.close()

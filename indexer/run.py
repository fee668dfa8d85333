"""Entry points of the indexer: one pass now, or passes on a schedule."""
from __future__ import annotations

import contextlib
import dataclasses
import logging

from findimage import logs
from findimage.backends import image_embedder, open_store, using_store
from findimage.config import Settings
from findimage.models.base import ImageEmbedder
from findimage.observability import Readiness, serve_monitoring
from findimage.stores.base import Store

from .index_pass import Distribute, IndexPass, MassRemovalRefused, PassRequest, PassSummary
from .lock import HeldPass, pass_guard
from .metrics import PASSES, readiness_probe, record_pass, record_store
from .scan import ArchiveUnavailable
from .schedule import run_schedule

log = logging.getLogger(__name__)
PASS_ID_CHARS = 12


def named_pass() -> contextlib.AbstractContextManager[None]:
    """The log lines of one pass, from its lock to its summary, name it (pass_id: findimage.logs), also
    those of its buckets on the queue's workers (indexer.queue)."""
    return logs.ids(pass_id=logs.new_id(PASS_ID_CHARS))


def _one_pass(settings: Settings, held: HeldPass, asked: PassRequest) -> PassSummary:
    """One pass into the store pass_guard opened, which it stops writing into once another pass took its lease."""
    store, embedder = held.store, image_embedder(settings)
    asked = dataclasses.replace(asked, superseded=held.superseded)
    summary = IndexPass(store, embedder, settings, asked, distribute=_distribute(settings, store, embedder)).run()
    record_pass(summary)
    try:
        record_store(store, settings.ocr)
    except Exception as exc:  # the pass is done: its metrics are not worth failing it
        log.warning("the store's counts after the pass are not known (%s)", exc)
    return summary


def _distribute(settings: Settings, store: Store, embedder: ImageEmbedder) -> Distribute | None:
    """The queue's planner where FINDIMAGE_QUEUE_URL is set and a worker of the image model answers; None
    (embedding in this process) otherwise."""
    if not settings.queue_url:
        return None
    from .queue import Planner

    planner = Planner(settings, embedder.model_id, store.rebuild_target)
    if planner.workers():
        return planner
    # buckets nobody takes would wait for ever: this pass embeds here, the next asks again
    log.warning("no `findimage worker` with the image model %s answers on the queue; this pass embeds in its own "
                "process", embedder.model_id)
    return None


def index_once(settings: Settings, full: bool = False, progress: bool | None = None,
               allow_mass_removal: bool = False) -> PassSummary:
    """One pass, refused (AlreadyRunning) while another process is indexing the same data or index."""
    with named_pass(), using_store(settings), pass_guard(settings) as held:
        return _one_pass(settings, held, PassRequest(full, allow_mass_removal, progress))


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
    def scheduled_pass(held: HeldPass) -> PassSummary | None:
        try:
            summary = _one_pass(settings, held, PassRequest(progress=False))
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

    def named(held: HeldPass) -> PassSummary | None:
        with named_pass():
            return scheduled_pass(held)

    readiness = Readiness(readiness_probe(settings))  # between passes too: the archive, the store
    monitoring = serve_monitoring(settings, readiness)
    try:
        with using_store(settings):
            run_schedule(settings.data_dir, settings.index_interval_minutes, named, lambda: pass_guard(settings))
    finally:
        if monitoring is not None:
            monitoring.close()

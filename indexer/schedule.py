"""Keep the index current: one pass at start, then one every interval, never two at once."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, overload

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from findimage.errors import BackendUnavailable

from .lock import AlreadyRunning, pass_lock, scheduler_lock
from .metrics import PASSES

log = logging.getLogger(__name__)
Held = TypeVar("Held")  # what a guard holds while a pass runs (indexer.lock.HeldPass)
T = TypeVar("T")


@overload
def run_locked_pass(data_dir: str | Path, run_pass: Callable[[None], T], guard: None = None) -> T | None: ...


@overload
def run_locked_pass(data_dir: str | Path, run_pass: Callable[[Held], T],
                    guard: Callable[[], AbstractContextManager[Held]]) -> T | None: ...


def run_locked_pass(data_dir: str | Path, run_pass: Callable[[Any], T],
                    guard: Callable[[], AbstractContextManager[object]] | None = None) -> T | None:
    """Run one pass unless another process is in the middle of one (then skip it and say so).

    `guard` makes what keeps other passes out (indexer.lock.pass_guard); by default the data folder's lock.
    `run_pass` is given what the guard holds (indexer.lock.HeldPass: the store and the lease, or None).
    """
    try:
        with (guard or (lambda: _lock_only(data_dir)))() as held:
            return run_pass(held)
    except AlreadyRunning as exc:
        log.warning("skipping this pass: %s", exc)
        PASSES.labels(outcome="skipped").inc()
        return None
    except BackendUnavailable as exc:  # the store or the lease: Elasticsearch is down or refuses the key
        log.error("indexing pass not started: %s", exc)
        PASSES.labels(outcome="skipped").inc()
        return None
    except Exception:  # the store could not be opened (e.g. written by a newer release): the schedule goes on
        log.exception("indexing pass failed; the next pass will retry")
        PASSES.labels(outcome="failed").inc()
        return None


@contextlib.contextmanager
def _lock_only(data_dir: str | Path) -> Iterator[None]:
    with pass_lock(data_dir):
        yield None


def make_scheduler(interval_minutes: float, job: Callable[[], object],
                   scheduler_class: type[BaseScheduler] = BlockingScheduler) -> BaseScheduler:
    scheduler = scheduler_class()
    # max_instances=1 + coalesce: a pass that overruns the interval delays the next, never doubles it.
    scheduler.add_job(job, "interval", minutes=interval_minutes, next_run_time=datetime.now(),
                      max_instances=1, coalesce=True, id="index-pass", misfire_grace_time=None)
    return scheduler


def run_schedule(data_dir: str | Path, interval_minutes: float, job: Callable[[Held], object],
                 guard: Callable[[], AbstractContextManager[Held]]) -> None:
    """Block forever running `job` on schedule; raises AlreadyRunning if another scheduler holds the lock."""
    with scheduler_lock(data_dir):
        scheduler = make_scheduler(interval_minutes, lambda: run_locked_pass(data_dir, job, guard))
        log.info("indexing every %g minutes", interval_minutes)
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            scheduler.shutdown(wait=False)


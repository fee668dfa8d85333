"""Indexing spread over workers with Celery on Redis (FINDIMAGE_QUEUE_URL).

`findimage index` / `schedule` stay the planner: they hold the lease, scan, decide what changed, and hand
the files to embed to the queue in buckets (by path hash, FINDIMAGE_BUCKET_SIZE files each, at most
FINDIMAGE_QUEUE_IN_FLIGHT queued at once, so Redis never holds the whole archive). `findimage worker`
processes take buckets one at a time: each runs indexer.embedding (the same code as a pass in one
process: models loaded once per process, vectors of known content reused, documents written with ids
from their paths), and answers what each file became; the planner counts, then does what only it may
(moves, removals, the summary, the text stage, a rebuild's alias swap) once every bucket is back. Each
image model has its own queue: a worker started with another FINDIMAGE_IMAGE_MODEL never takes (and never
answers the ping of) a pass whose vectors it would get wrong. A `--full` rebuild's buckets name the index
it writes (Elasticsearch), which the workers write into.

Faults: a bucket is acknowledged only when done (`acks_late`), so one a killed worker held goes to another
after FINDIMAGE_QUEUE_VISIBILITY_SECONDS; writes are idempotent, so a bucket done twice is stored once. A
bucket taken MAX_ATTEMPTS times without finishing (a file that kills the decoder) is answered as failed
files, as a broken file is in one process. The planner queues a bucket again when no answer came within the
visibility time (Redis restarted without its queue), and a planner killed mid-pass loses nothing: the next
pass finds the finished buckets' documents unchanged and queues only the rest.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import ssl
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery, signals
from celery.exceptions import TimeoutError as NoAnswer
from celery.result import AsyncResult

from findimage import logs
from findimage.config import Settings, public_url
from findimage.errors import EXIT_UNAVAILABLE, FindimageError, StoreError
from findimage.models.base import ImageEmbedder
from findimage.stores.base import Store

from .embedding import Embedding
from .metrics import BUCKETS
from .outcome import Outcome
from .scan import ArchiveFile, not_listed
from .text_stage import Readers

log = logging.getLogger(__name__)
QUEUE = "findimage-index"
TASK = "findimage.embed_bucket"
PING = "findimage.ping"  # answered by a worker of the model whose queue it is sent to: its name
MAX_ATTEMPTS = 3  # takes of one bucket; past it its files are recorded as failed
POLL_SECONDS = 0.2
PROGRESS_KEY = "findimage:progress"  # the running pass's progress, for `findimage status`


class QueueRefused(FindimageError):
    """The queue cannot be used as configured (its password, its TLS certificate): waiting will not help."""

    exit_code = EXIT_UNAVAILABLE


def celery_app(settings: Settings) -> Celery:
    app = Celery("findimage", broker=settings.queue_url, backend=settings.queue_url)
    tls = tls_options(settings)
    app.conf.update(
        task_acks_late=True,  # a bucket leaves the queue only once done...
        task_reject_on_worker_lost=True,  # ...and goes back to it when its worker dies
        worker_prefetch_multiplier=1,  # a worker holds only the bucket it works on
        broker_transport_options={"visibility_timeout": settings.queue_visibility_seconds},
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_expires=7 * 86_400, task_default_queue=QUEUE, broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False,
        # Whoever can write to Redis could otherwise shut workers down, change their queues or read their
        # state with a broadcast; the planner asks for workers with PING, a task on the model's queue.
        worker_enable_remote_control=False,
        broker_use_ssl=tls, redis_backend_use_ssl=tls,
    )
    app.task(name=TASK, bind=True)(_embed_bucket)
    app.task(name=PING)(_ping)
    return app


def tls_options(settings: Settings) -> dict[str, Any] | None:
    """redis-py's TLS options for a rediss:// queue (None for redis://): Redis's certificate is verified,
    against FINDIMAGE_QUEUE_TLS_CA_FILE or the system's CAs, and must name the host; this process shows its
    own certificate where one is set."""
    if not (settings.queue_url or "").startswith("rediss://"):
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    for key, path in (("ssl_ca_certs", settings.queue_tls_ca_file), ("ssl_certfile", settings.queue_tls_cert_file),
                      ("ssl_keyfile", settings.queue_tls_key_file)):
        if path is not None:
            options[key] = str(path)
    return options


def trouble(exc: BaseException) -> str:
    """What keeps the queue from answering, as the end of a sentence about it: never the exception's text
    itself, which may quote the URL."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(isinstance(e, redis.AuthenticationError) for e in chain) or re.search(
            r"WRONGPASS|NOAUTH|invalid password|invalid username-password|Authentication required", text):
        return "refused the password (check the one in FINDIMAGE_QUEUE_URL)"
    if "CERTIFICATE_VERIFY_FAILED" in text and "mismatch" in text.lower():
        return "has a TLS certificate for another host name"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ("has a TLS certificate this process does not trust (set FINDIMAGE_QUEUE_TLS_CA_FILE to the CA that "
                "signed it)")
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSL" in text:
        return "failed the TLS handshake (rediss:// needs Redis's TLS port, redis:// its plain one)"
    if "refused" in text.lower():
        return "is not reachable (connection refused)"
    if "Connection closed by server" in text or "reset by peer" in text:
        return "closed the connection (a plain redis:// URL on Redis's TLS port?)"
    return f"is not reachable ({type(exc).__name__})"


def refused_as_configured(exc: BaseException) -> bool:
    """A password or certificate problem, which no retry mends (unlike a Redis that is not up yet)."""
    return not trouble(exc).startswith(("is not reachable", "closed the connection"))


def queue_for(model_id: str) -> str:
    """The queue of the passes that embed with this image model, and only its workers' (their names
    begin with the same tag)."""
    return f"{QUEUE}.{model_tag(model_id)}"


def model_tag(model_id: str) -> str:
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:12]


def bucket_of(relative_path: str, buckets: int) -> int:
    """A stable bucket per path (the same on every run, unlike Python's salted hash)."""
    return zlib.crc32(relative_path.encode("utf-8")) % buckets


def split(files: list[ArchiveFile], size: int) -> list[list[ArchiveFile]]:
    count = max(1, math.ceil(len(files) / size))
    buckets: list[list[ArchiveFile]] = [[] for _ in range(count)]
    for file in files:
        buckets[bucket_of(file.relative_path, count)].append(file)
    return [b for b in buckets if b]


# ---- the worker's side ----------------------------------------------------------------------------
@dataclass
class WorkerState:
    """What a worker process loads once: its settings, store and image model, and its text readers (the text of
    what a bucket embeds is read by the worker that embedded it, while it embeds the bucket's next files)."""

    settings: Settings
    store: Store
    embedder: ImageEmbedder
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    readers: Readers | None = None


_worker: WorkerState | None = None


def serve(settings: Settings, store: Store, embedder: ImageEmbedder, loaded: Callable[[], None] = lambda: None) -> None:
    """`findimage worker`: take buckets until stopped (one at a time per process); `loaded` is called once its
    model is loaded (the process is ready then)."""
    global _worker
    app = celery_app(settings)
    try:
        on_redis(app, lambda client: client.ping())
    except Exception as exc:  # noqa: BLE001 - one sentence, no traceback; a Redis not up yet is waited for
        if refused_as_configured(exc):
            raise QueueRefused(f"The queue at {public_url(settings.queue_url)} {trouble(exc)}.") from None
        log.warning("the queue at %s %s; waiting for it", public_url(settings.queue_url), trouble(exc))
    _worker = WorkerState(settings, store, embedder, readers=Readers(settings) if settings.ocr else None)
    embedder.load()
    loaded()
    log.info("worker %s takes buckets of %s from %s", _worker.name, embedder.model_id,
             public_url(settings.queue_url))
    name = f"findimage-{model_tag(embedder.model_id)}-{uuid.uuid4().hex[:8]}@%h"
    # Celery configures logging unless a receiver of setup_logging does: this process logged before Celery
    # started (findimage.logs), and goes on as it began, at its level and in its format.
    signals.setup_logging.connect(_logging_kept, weak=False)
    # --quiet: no banner on stdout, which JSON lines would not parse (its facts are in the line above)
    quiet = ["--quiet"] if logs.log_format() == "json" else []
    # solo: the bucket runs in this process, beside the model it loaded (one process, one bucket at a time)
    app.worker_main([*quiet, "worker", "--pool=solo", "-Q", queue_for(embedder.model_id), "-n", name,
                     "--without-gossip", "--without-mingle"])


def _logging_kept(**_: Any) -> None:
    """Celery's setup_logging signal, answered by leaving the log as findimage.logs configured it."""


def _ping() -> str:
    """The planner's question whether a worker of its model is there (a task on the model's queue, which
    only those workers take): this worker's name."""
    if _worker is None:
        raise RuntimeError("a findimage ping reached a process that is not `findimage worker`")
    return _worker.name


def _embed_bucket(task: Any, bucket: Any) -> dict:
    """One bucket, counted as done or failed (indexer.metrics): see `_bucket`."""
    outcome = "failed"
    try:
        answer = _bucket(task, bucket)
        outcome = "failed" if answer.get("refused") or answer.get("given_up") else "done"
        return answer
    finally:
        BUCKETS.labels(outcome=outcome).inc()


def _bucket(task: Any, bucket: Any) -> dict:
    """One bucket embedded, as the planner asked, or refused: anyone who can write to Redis can queue one,
    so the worker itself holds each to what a pass of its own would do. A bucket must write into the live
    index or the rebuild in progress (the store decides: write_into), and name only files the scan lists
    (indexer.scan's rules: no hidden files, no path out of the archive, no link leading out of it)."""
    worker = _worker
    if worker is None:
        raise RuntimeError("a findimage bucket reached a process that is not `findimage worker`")
    try:
        bucket_id, listed = _bucket_files(bucket)
    except (KeyError, TypeError, ValueError):
        log.warning("a malformed bucket refused (not one a findimage planner sends)")
        return {"worker": worker.name, "refused": "malformed", "outcomes": []}
    with logs.ids(pass_id=pass_of(bucket_id)):
        return _embed_files(worker, task, bucket, bucket_id, listed)


def pass_of(bucket_id: str) -> str | None:
    """The id of the pass that queued a bucket (its id is `<pass id>-<n>`), for the worker's log lines."""
    found = re.fullmatch(r"([0-9a-f]{6,32})-[0-9]+", bucket_id)
    return found.group(1) if found else None


def _embed_files(worker: WorkerState, task: Any, bucket: dict, bucket_id: str,
                 listed: list[tuple[str, int, float]]) -> dict:
    attempts = _count_attempt(task.app, bucket_id, worker.settings.queue_visibility_seconds)
    archive = Path(worker.settings.archive)
    if attempts > MAX_ATTEMPTS:
        reason = (f"a worker stopped {MAX_ATTEMPTS} times while indexing the bucket this file is in (a file in "
                  "it may crash the decoder); it is tried again when it changes")
        log.warning("bucket %s taken %d times: its %d files recorded as failed", bucket_id, attempts, len(listed))
        return {"worker": worker.name, "given_up": True,
                "outcomes": [Outcome(path, error=reason).as_json() for path, _, _ in listed]}
    settings = worker.settings
    try:
        worker.store.write_into(bucket.get("index"))  # a rebuild's new index, or (None) the live one
    except StoreError as exc:
        log.warning("bucket %s refused, none of its %d files embedded: %s", bucket_id, len(listed), exc)
        return {"worker": worker.name, "refused": str(exc),
                "outcomes": [Outcome(path, error=f"refused by its worker: {exc}").as_json() for path, _, _ in listed]}
    refused: dict[str, str] = {}
    for path, _, _ in listed:
        why = not_listed(archive, path)
        if why is not None:
            refused[path] = f"refused by its worker: not an archive image the scan lists ({why})"
            log.warning("bucket %s: %s refused (%s)", bucket_id, path, why)
    files = [ArchiveFile(path, archive / path, size, mtime) for path, size, mtime in listed if path not in refused]
    # The text is read here where the planner reads text (and this worker may): what is left, the planner reads.
    readers = worker.readers if bucket.get("text") else None
    embedding = Embedding(worker.store, worker.embedder, settings, bool(bucket.get("full")), readers)
    try:
        outcomes = [o.as_json() for batch in embedding.run(files) for o in batch]
    finally:
        worker.store.write_into(None)
    outcomes += [Outcome(path, error=reason).as_json() for path, reason in refused.items()]
    return {"worker": worker.name, "outcomes": outcomes}


def _bucket_files(bucket: Any) -> tuple[str, list[tuple[str, int, float]]]:
    """The bucket's id and its (path, size, mtime) entries; KeyError, TypeError or ValueError for anything
    else in their place."""
    bucket_id, files = bucket["id"], bucket["files"]
    if not isinstance(bucket_id, str) or not isinstance(files, list):
        raise TypeError("not a bucket")
    listed = [(path, int(size), float(mtime)) for path, size, mtime in files]
    if not all(isinstance(path, str) for path, _, _ in listed):
        raise TypeError("not a path")
    return bucket_id, listed


def _count_attempt(app: Celery, bucket_id: str, ttl: float) -> int:
    """How many times this bucket was taken, counted in Redis beside the queue."""
    key = f"findimage:attempts:{bucket_id}"

    def count(client: Any) -> int:
        attempts = int(client.incr(key))
        client.expire(key, int(max(ttl * (MAX_ATTEMPTS + 2), 3600)))
        return attempts

    return int(on_redis(app, count))


# ---- the planner's side ---------------------------------------------------------------------------
@dataclass
class Progress:
    """For the progress bar and `findimage status`."""

    buckets: int = 0
    done: int = 0
    queued: int = 0
    workers: set[str] = field(default_factory=set)
    images: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        rate = self.images / max(1e-9, time.monotonic() - self.started)
        return (f"buckets {self.done}/{self.buckets} done, {self.queued} queued, {len(self.workers)} worker(s), "
                f"{rate:.1f} images/s")


def on_redis(app: Celery, call: Callable[[Any], Any]) -> Any:
    """`call(redis client)` on a connection of the app's broker, closed afterwards. Connecting is retried for
    the connection's timeout (kombu's), except after a refusal as configured, which fails at once: no retry
    mends a wrong password or an untrusted certificate, and `status`, `doctor` and a starting worker say so
    without waiting for one."""
    def refused(exc: Exception, _interval: float) -> None:
        if refused_as_configured(exc):
            raise exc

    with app.connection_for_write() as connection:
        connection.ensure_connection(errback=refused, timeout=connection.connect_timeout)
        return call(connection.default_channel.client)


def queue_state(settings: Settings) -> str:
    """`findimage status`: the running pass's buckets, or that none is running."""
    app = celery_app(settings)
    try:
        line = on_redis(app, lambda client: client.get(PROGRESS_KEY))
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        return f"{public_url(settings.queue_url)} {trouble(exc)}"
    finally:
        app.close()
    return f"{public_url(settings.queue_url)}: " + (line.decode() if line else "no pass running")


class Planner:
    """Hands a pass's files to the workers and yields what each became (the pass's `distribute`)."""

    def __init__(self, settings: Settings, model_id: str, rebuild_target: Callable[[], str | None] = lambda: None,
                 app: Celery | None = None, clock: Callable[[], float] = time.monotonic):
        """`model_id`: the pass's image model (only its workers are asked); `rebuild_target`: where a
        `--full` pass writes (the store's rebuild_target), read when the pass hands out its buckets."""
        self.settings = settings
        self.model_id = model_id
        self.queue = queue_for(model_id)
        self.rebuild_target = rebuild_target
        self.app = app or celery_app(settings)
        self.clock = clock
        self.progress = Progress()
        self._published = 0.0

    def workers(self, timeout: float = 6.0) -> list[str]:
        """A worker of this pass's model answering a ping within `timeout` (a pass with none embeds in its own
        process instead of waiting); the first answer is enough. The ping is a task on the model's queue (the
        workers take no broadcast): an idle worker answers at once, a busy one after its bucket, and one
        not taken in time expires unanswered."""
        result: AsyncResult | None = None
        try:
            result = self.app.send_task(PING, queue=self.queue, expires=timeout)
            return [str(result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False))]
        except Exception as exc:  # noqa: BLE001 - none answered, or Redis away: the caller embeds itself
            if not isinstance(exc, NoAnswer):
                log.warning("the queue at %s %s", public_url(self.settings.queue_url), trouble(exc))
            return []
        finally:
            if result is not None:
                try:
                    result.forget()
                except Exception:  # noqa: BLE001 - an answer left in Redis expires on its own
                    pass
                _release(result)

    def __call__(self, files: list[ArchiveFile], stop: Callable[[], None], bar: Any,
                 full: bool = False) -> Iterator[Outcome]:
        try:
            yield from self._run(files, stop, bar, full)
        finally:
            self.app.close()  # its result connections, before the pass's end leaves them to the collector

    def _run(self, files: list[ArchiveFile], stop: Callable[[], None], bar: Any, full: bool) -> Iterator[Outcome]:
        in_flight: dict[str, tuple[AsyncResult | None, dict, float]] = {}
        try:
            yield from self._buckets(files, stop, bar, in_flight, full)
        finally:  # a pass stopped (a kill, an error): the buckets still out are the next pass's to redo
            for result, _, _ in in_flight.values():
                if result is not None:
                    _release(result)

    def _buckets(self, files: list[ArchiveFile], stop: Callable[[], None], bar: Any,
                 in_flight: dict[str, tuple[AsyncResult | None, dict, float]], full: bool) -> Iterator[Outcome]:
        pass_id = logs.current_ids().get("pass_id") or uuid.uuid4().hex[:12]  # in the log of both sides
        target = self.rebuild_target() if full else None
        pending: list[dict[str, Any]] = [
            {"id": f"{pass_id}-{n}", "files": [[f.relative_path, f.size, f.mtime] for f in bucket], "full": full,
             "index": target, "text": self.settings.ocr}
            for n, bucket in enumerate(split(files, self.settings.bucket_size))]
        self.progress = Progress(buckets=len(pending))
        while pending or in_flight:
            while pending and len(in_flight) < self.settings.queue_in_flight:
                bucket = pending.pop(0)
                in_flight[str(bucket["id"])] = (self._send(bucket), bucket, self.clock())
            self.progress.queued = len(in_flight)
            stop()
            finished = [(key, entry) for key, entry in in_flight.items() if self._ready(entry[0])]
            for key, (result, bucket, _) in finished:
                del in_flight[key]
                outcomes = self._answered(result, bucket, bar)
                if outcomes is None:  # no answer to read (Redis lost it): the bucket goes again
                    pending.append(bucket)
                    continue
                yield from outcomes
            for key, (result, bucket, sent) in list(in_flight.items()):
                if result is None or self.clock() - sent > self.settings.queue_visibility_seconds:
                    if result is not None:
                        log.warning("bucket %s not answered within %.0f s; queued again", key,
                                    self.settings.queue_visibility_seconds)
                        _release(result)
                    in_flight[key] = (self._send(bucket), bucket, self.clock() if result is not None else sent)
            if not finished:
                time.sleep(POLL_SECONDS)
            bar.set_postfix_str(self.progress.line(), refresh=False)
            self._publish(f"{self.progress.line()} (pass running)")
        self._publish(None)

    def _send(self, bucket: dict) -> AsyncResult | None:
        """The bucket queued; None while Redis cannot be reached (it is sent again on the next round)."""
        try:
            return self.app.send_task(TASK, args=[bucket], queue=self.queue)
        except Exception as exc:  # noqa: BLE001 - Redis restarting: the pass waits for it, loses nothing
            self._unreachable(exc)
            return None

    def _ready(self, result: AsyncResult | None) -> bool:
        if result is None:
            return False
        try:
            return bool(result.ready())
        except Exception as exc:  # noqa: BLE001 - as above: asked again on the next round
            self._unreachable(exc)
            return False

    def _unreachable(self, exc: Exception) -> None:
        log.warning("the queue at %s %s; waiting for it", public_url(self.settings.queue_url), trouble(exc))
        time.sleep(1.0)

    def _publish(self, line: str | None) -> None:
        """The progress line where `findimage status` reads it (at most once a second; gone at the end)."""
        now = self.clock()
        if line is not None and now - self._published < 1.0:
            return
        self._published = now
        try:
            on_redis(self.app, lambda client: client.delete(PROGRESS_KEY) if line is None
                      else client.set(PROGRESS_KEY, line, ex=3600))
        except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the pass goes on
            log.debug("progress not published: %s", exc)

    def _answered(self, result: AsyncResult | None, bucket: dict, bar: Any) -> list[Outcome] | None:
        """What the bucket's files became; None when the answer could not be read and the bucket should
        go again (at most MAX_ATTEMPTS times: then its files failed this pass, as its worker did)."""
        assert result is not None  # only ready results are answered
        try:
            answer = result.get(propagate=True, disable_sync_subtasks=False)
        except Exception as exc:  # the task raised (a bug, the store away too long), or Redis lost the answer
            bucket["tries"] = bucket.get("tries", 1) + 1
            if bucket["tries"] <= MAX_ATTEMPTS:
                log.warning("bucket %s: no answer (%s); queued again", bucket["id"], exc)
                return None
            log.warning("bucket %s failed on its worker: %s", bucket["id"], exc)
            answer = {"worker": "", "outcomes": [Outcome(path, error=f"its worker failed: {exc}").as_json()
                                                 for path, _, _ in bucket["files"]]}
        finally:
            try:
                result.forget()
            except Exception:  # noqa: BLE001 - an answer left in Redis expires on its own
                pass
            _release(result)
        self.progress.done += 1
        if answer.get("worker"):
            self.progress.workers.add(answer["worker"])
        outcomes = [Outcome.of_json(o) for o in answer["outcomes"]]
        self.progress.images += sum(1 for o in outcomes if o.error is None)
        bar.update(len(outcomes))
        return outcomes


def _release(result: AsyncResult) -> None:
    """Stop waiting for a bucket's answer now, while Redis is likely up: Celery would otherwise do it when
    the collector frees the result, at any later time (and, with Redis gone then, print a traceback)."""
    backend, result.backend = result.backend, None
    try:
        backend.remove_pending_result(result)
    except Exception:  # noqa: BLE001 - nothing to stop waiting for (Redis gone): the subscription went with it
        pass

"""What operators watch in every long-running findimage process: Prometheus metrics (`/metrics`), whether
the process is alive (`/healthz`) and whether it can answer now (`/readyz`).

HTTP mode serves the three beside `/slack/events` (bot.web); Socket Mode, `findimage schedule` and
`findimage worker` serve them on FINDIMAGE_METRICS_PORT (`serve_monitoring`, a small server thread).

/healthz never asks a dependency: a platform restarts a process whose liveness check fails, and a restart
does not bring a store back. /readyz asks them (`Readiness`), in the background and at most every few
seconds, so a router stops sending work to a process that cannot answer, and sends it again by itself
once the store is back. Neither ever names a path, a host or an exception: both may face the internet.

Label values come only from the sets declared with each metric (`FixedLabels`): no channel, user, path,
secret or text of a request ever becomes a label, however a caller is written.
"""
from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from findimage import __version__
from findimage.archive_files import archive_root_problem
from findimage.config import ConfigError, Settings

log = logging.getLogger(__name__)
OTHER = "other"  # what a label value outside its declared set is counted as
READY_TTL_SECONDS = 5.0  # how old the readiness (and the gauges its probe sets) may be
READY_TIMEOUT_SECONDS = 5.0  # a probe not back by then: the store (or the archive's mount) is not answering

Page = tuple[str, str, bytes]  # HTTP status, content type, body
# What generate_latest writes (plain metric names): the text format every Prometheus version reads.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# ---- metrics ------------------------------------------------------------------------------------------

class FixedLabels:
    """A labelled metric whose label values come only from the sets declared with it. Every combination
    exists from the start (at 0), so a rate is defined before the first event; a value outside its set is
    counted as "other" and logged (without the value, which might be anything)."""

    def __init__(self, metric: Any, allowed: Mapping[str, tuple[str, ...]]):
        self.metric = metric
        self.allowed = {name: frozenset(choices) for name, choices in allowed.items()}
        for combination in itertools.product(*allowed.values()) if allowed else ():
            metric.labels(*combination)

    def labels(self, **given: str) -> Any:
        """The series of these label values (the metric itself where it has no labels)."""
        if not self.allowed:
            return self.metric
        return self.metric.labels(*(self._fixed(name, given[name]) for name in self.allowed))

    def _fixed(self, name: str, value: str) -> str:
        if value in self.allowed[name]:
            return value
        log.warning("metric %s: a %s outside its fixed set, counted as %r", self.metric._name, name, OTHER)
        return OTHER


def counter(name: str, documentation: str, **labels: tuple[str, ...]) -> FixedLabels:
    return FixedLabels(Counter(name, documentation, list(labels)), labels)


GaugeMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent",
                    "livemostrecent"]


def gauge(name: str, documentation: str, mode: GaugeMode = "livesum", **labels: tuple[str, ...]) -> FixedLabels:
    """`mode`: how gunicorn's workers' values add up (prometheus_client's multiprocess_mode)."""
    return FixedLabels(Gauge(name, documentation, list(labels), multiprocess_mode=mode), labels)


def histogram(name: str, documentation: str, buckets: tuple[float, ...], **labels: tuple[str, ...]) -> FixedLabels:
    return FixedLabels(Histogram(name, documentation, list(labels), buckets=buckets), labels)


def metrics_page() -> Page:
    """The metrics in Prometheus's text format: this process's, or, where its metrics are written to
    PROMETHEUS_MULTIPROC_DIR (gunicorn's workers, bot.server), every worker's added up."""
    if getattr(values.ValueClass, "_multiprocess", False):
        registry = CollectorRegistry()  # per request, as prometheus_client's multiprocess mode asks
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return "200 OK", METRICS_CONTENT_TYPE, body


# ---- health and readiness -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Ready:
    """Whether the process can answer now, and the one sentence /readyz says about it."""

    ok: bool
    sentence: str
    documents: int | None = None


STARTING = Ready(False, "Not ready: the models are still loading.")
CHECKING = Ready(False, "Not ready: the first check of the store is still running.")
STORE_DOWN = Ready(False, "Not ready: the store is not answering.")
NOT_ANSWERING = Ready(False, f"Not ready: the store or the archive folder did not answer within "
                             f"{READY_TIMEOUT_SECONDS:g} seconds.")
ARCHIVE_MISSING = Ready(False, "Not ready: the archive folder is missing or cannot be read (is it mounted?).")


def probe_store(count: Callable[[], int], archive: str | Path) -> Ready:
    """Ready when the archive folder can be listed and the store counts its documents. What went wrong
    goes to the log only: the sentence names no path and no host."""
    problem = archive_root_problem(archive)
    if problem is not None:
        log.warning("not ready: %s", problem)
        return ARCHIVE_MISSING
    try:
        documents = int(count())
    except Exception as exc:
        log.warning("not ready: the store is not answering (%s: %s)", type(exc).__name__, exc)
        return STORE_DOWN
    return Ready(True, f"Ready: {documents:,} documents in the archive.", documents)


class Readiness:
    """The process's readiness, probed in the background: a request never waits on the store.

    Readiness checks come from routers and from anyone who finds the URL, on the request threads Slack's
    acks need; with Elasticsearch one count can take its timeout and retries (half a minute). So every
    request answers at once from the last probe; once that is `ttl` seconds old, one thread probes again
    (never two at once). A probe still running after `timeout` seconds is a store that does not answer:
    not ready until it comes back. Until `watch` is given the probe (the models loaded), not ready.
    """

    def __init__(self, probe: Callable[[], Ready] | None = None, *, clock: Callable[[], float] = time.monotonic,
                 ttl: float = READY_TTL_SECONDS, timeout: float = READY_TIMEOUT_SECONDS):
        self._probe = probe
        self._clock = clock
        self._ttl = ttl
        self._timeout = timeout
        self._lock = threading.Lock()  # held for bookkeeping only, never around the probe
        self._last: Ready | None = None
        self._fresh_until = float("-inf")
        self._probing_since: float | None = None

    def watch(self, probe: Callable[[], Ready]) -> None:
        """From now on the process is probed with `probe` (its models are loaded); the first probe is waited
        for at most the timeout."""
        with self._lock:
            self._probe, self._last, self._fresh_until = probe, None, float("-inf")
        self.start()

    def start(self) -> None:
        """The first probe, before the server takes requests; waited for at most the timeout."""
        thread = self._claim()
        if thread is not None:
            thread.join(self._timeout)

    def status(self) -> Ready:
        self._claim()
        with self._lock:
            now, last, since, probe = self._clock(), self._last, self._probing_since, self._probe
        if probe is None:
            return STARTING
        if since is not None and now - since >= self._timeout:
            return NOT_ANSWERING
        return last or CHECKING

    def _claim(self) -> threading.Thread | None:
        """A started probe thread when the last probe is stale and none is running; else None."""
        with self._lock:
            now = self._clock()
            if self._probe is None or self._probing_since is not None or now < self._fresh_until:
                return None
            self._probing_since = now
            probe = self._probe
        thread = threading.Thread(target=self._refresh, args=(probe,), name="readiness", daemon=True)
        thread.start()
        return thread

    def _refresh(self, probe: Callable[[], Ready]) -> None:
        result = STORE_DOWN
        try:
            result = probe()
        except Exception as exc:
            log.warning("not ready: the store is not answering (%s: %s)", type(exc).__name__, exc)
        finally:
            with self._lock:
                if self._probe is probe:
                    self._last = result
                    self._fresh_until = self._clock() + self._ttl
                self._probing_since = None


def health_page(**extra: int) -> Page:
    """/healthz: the process is alive; 200 whatever its dependencies do. Its status and version, and `extra`
    numbers the process knows without asking anyone (the bot's queued answers)."""
    body = {"status": "ok", "version": __version__, **extra}
    return "200 OK", "application/json", json.dumps(body).encode()


def readiness_page(ready: Ready) -> Page:
    """/readyz: 200 when the process can answer now, else 503; one sentence either way."""
    return ("200 OK" if ready.ok else "503 Service Unavailable", "text/plain; charset=utf-8",
            f"{ready.sentence}\n".encode())


def monitoring_page(path: str, readiness: Readiness, extra: Callable[[], dict[str, int]] = dict) -> Page | None:
    """The answer to GET `path` when it is /metrics, /healthz or /readyz; None for any other path."""
    if path == "/healthz":
        return health_page(**extra())
    if path == "/readyz":
        return readiness_page(readiness.status())
    if path == "/metrics":
        readiness.status()  # the gauges its probe sets (the store's counts): renewed, never waited for
        return metrics_page()
    return None


# ---- the monitoring server of processes without a web server of their own -----------------------------

class MonitoringServer:
    """/metrics, /healthz and /readyz on FINDIMAGE_METRICS_HOST:FINDIMAGE_METRICS_PORT, from a daemon thread."""

    def __init__(self, host: str, port: int, readiness: Readiness, extra: Callable[[], dict[str, int]] = dict):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = monitoring_page(self.path.split("?", 1)[0], readiness, extra)
                status, content_type, body = page or ("404 Not Found", "text/plain; charset=utf-8", b"Not found.\n")
                self.send_response(int(status.split()[0]))
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not logged
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self.httpd = Server((host, port), Handler)
        except OSError as exc:
            raise ConfigError([f"FINDIMAGE_METRICS_PORT={port} cannot be served on {host} ({exc.strerror}): "
                               "choose a free port (or unset FINDIMAGE_METRICS_PORT)."]) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="monitoring", daemon=True)
        self.thread.start()
        log.info("serving /metrics, /healthz and /readyz on %s:%d", host, port)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_monitoring(settings: Settings, readiness: Readiness,
                     extra: Callable[[], dict[str, int]] = dict) -> MonitoringServer | None:
    """The monitoring server where FINDIMAGE_METRICS_PORT is set (None where not); ConfigError with one
    sentence when its port cannot be had."""
    if settings.metrics_port is None:
        return None
    return MonitoringServer(settings.metrics_host, settings.metrics_port, readiness, extra)

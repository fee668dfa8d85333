"""`findimage bot`: Socket Mode when SLACK_APP_TOKEN is set, else the HTTP server (gunicorn, started here).

HTTP mode runs one gunicorn process with threads, so the models are loaded once and every request
thread shares them; the settings below are the whole web server configuration (the Procfile's `web:`
line is just `findimage bot`). Its workers write their metrics into a folder of their own (prometheus_client's
multiprocess mode), so /metrics adds up every worker's, whichever worker answers the scrape.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger

from findimage import logs
from findimage.config import ConfigError, Settings, export_to_environment, report_problems, require_slack
from findimage.errors import EXIT_OK, EXIT_USAGE, FindimageError

if TYPE_CHECKING:
    from datetime import timedelta

    from gunicorn.config import Config
    from gunicorn.http.message import Request
    from gunicorn.http.wsgi import Response
    from gunicorn.workers.base import Worker

    from .app import WebApp

__all__ = ["EXIT_OK", "EXIT_USAGE", "run"]
log = logging.getLogger("bot")


class AccessLog(Logger):
    """gunicorn's logger, writing as the process logs (findimage.logs), with request lines and referers in
    the access log cut at the `?`.

    Its error and access lines go to stderr, in gunicorn's own text (secrets redacted) or as JSON lines
    (FINDIMAGE_LOG_FORMAT=json; an access line with its method, path and status as fields), the access
    lines only where the level lets INFO lines through.

    An image link's query string (`?expires=..&v=..&sig=..`) shows that image to anyone for a week, so
    whoever reads the log must not be able to copy it from there; a browser that opened a link also sends
    it as the referer of its next request (the favicon). Nothing the bot serves needs a query string.
    """

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        logs.adopt(self.error_log)
        logs.adopt(self.access_log)
        if logs.configured():  # else (a host that set up logging itself): gunicorn's own levels
            self.access_log.setLevel(max(logging.INFO, logs.level()))
        if not any(isinstance(f, _AccessFields) for f in self.access_log.filters):
            self.access_log.addFilter(_AccessFields())

    def atoms(self, resp: Response, req: Request, environ: dict[str, Any],
              request_time: timedelta) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = " ".join((environ.get("REQUEST_METHOD", "-"), without_query(environ.get("RAW_URI", "")),
                               environ.get("SERVER_PROTOCOL", "-")))
        atoms["q"] = "-"
        atoms["f"] = without_query(atoms.get("f", "-"))
        return atoms


def without_query(uri: str) -> str:
    return uri.split("?", 1)[0]


class _AccessFields(logging.Filter):
    """An access line's method, path (without its query) and status as fields of its record (a JSON line's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, Mapping):
            record.method, record.path = atoms.get("m"), without_query(str(atoms.get("U") or ""))
            status = str(atoms.get("s") or "")
            record.status = int(status) if status.isdigit() else None
        return True


# One worker process (the models are loaded once), 16 request threads (Slack's acks must not queue
# behind image links), 120 s for a slow image render, 30 s on SIGTERM to finish answers in progress.
GRACEFUL_SECONDS = 30
GUNICORN_OPTIONS = {"worker_class": "gthread", "workers": 1, "threads": 16, "timeout": 120,
                    "graceful_timeout": GRACEFUL_SECONDS, "accesslog": "-", "logger_class": AccessLog}
# Of the graceful time, what the answers queued after their acks may still use; the rest is for the
# requests in flight, which gunicorn finishes first, and for exiting before the arbiter's SIGKILL.
DRAIN_SECONDS = GRACEFUL_SECONDS - 5


def drain_answers(server: Arbiter, worker: Worker) -> None:
    """gunicorn's worker_exit hook: the worker stopped accepting requests; finish the queued answers."""
    work = getattr(getattr(worker, "wsgi", None), "work", None)
    if work is not None:
        work.drain(DRAIN_SECONDS)
    memory = getattr(getattr(worker, "wsgi", None), "memory", None)
    if memory is not None:  # what it holds stays kept: the next start on this host takes it back at once
        memory.stop()


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def workers_metrics(settings: Settings) -> Iterator[Path | None]:
    """The folder gunicorn's workers write their metrics into (PROMETHEUS_MULTIPROC_DIR), empty at the start:
    a fresh one of its own, removed at the end, or the one the setting names (a tmpfs), emptied.

    prometheus_client decides when it is first imported whether a process writes there, and the workers,
    forked from this process, inherit that: so it is set here, before anything imports it. Where something
    did already (a plugin, a test), each worker keeps its own metrics, which is right for the one worker
    `findimage bot` starts (findimage.observability serves what the worker's values are)."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before the web server started: /metrics shows the metrics "
                    "of the worker that answers it")
        yield None
        return
    given, owner = settings.metrics_multiprocess_dir, os.getpid()
    if given is not None:
        folder = given
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's: its counters would be added to this run's
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="findimage-metrics-"))
    export_to_environment(MULTIPROCESS_ENV, str(folder))
    try:
        yield folder
    finally:
        if os.getpid() == owner:  # not in a worker leaving through here
            export_to_environment(MULTIPROCESS_ENV, None)
            if given is None:
                shutil.rmtree(folder, ignore_errors=True)


def forget_dead_workers(folder: Path | None) -> Callable[[Any, Any], None]:
    """gunicorn's child_exit hook: a dead worker's live gauges (its queued answers) no longer count; its
    counters stay, as the requests it answered did happen."""

    def worker_gone(server: Any, worker: Any) -> None:
        if folder is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, str(folder))

    return worker_gone


def run(settings: Settings) -> int:
    """Serve until stopped; a start that cannot succeed ends with its sentence on stderr and its exit code
    (EXIT_USAGE for settings to fix, EXIT_UNAVAILABLE for Slack out of reach)."""
    try:
        require_slack(settings)
        if settings.slack_app_token:
            return _checked_and_served(settings, run_socket_mode)
        # HTTP mode: the workers' metrics folder is set before the start-up checks import the Slack clients,
        # which import prometheus_client (it decides on its first import where a process writes).
        with workers_metrics(settings) as folder:
            return _checked_and_served(settings, lambda s: _serve_http(s, None, folder), http=True)
    except FindimageError as exc:
        report(exc)
        return exc.exit_code


def _checked_and_served(settings: Settings, serve: Callable[[Settings], int], http: bool = False) -> int:
    """The start-up checks, before any model loads (a minute on a small server) and before gunicorn forks
    its worker; then `serve` while the data folder is held (not restored under a running bot)."""
    from findimage.backends import using_store

    from .credentials import check_slack, require_http_mode

    if http:
        require_http_mode(settings)
    check_slack(settings)
    with using_store(settings):
        return serve(settings)


def report(exc: FindimageError) -> None:
    if isinstance(exc, ConfigError):
        report_problems(exc.problems)
    else:
        logs.tell(f"findimage: {exc}")


def run_socket_mode(settings: Settings) -> int:
    """Connect out to Slack over a WebSocket: no public URL needed, works from behind a firewall."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from findimage.observability import Readiness, serve_monitoring

    from .app import configure_logging, create_app
    from .metrics import readiness_probe
    from .work import WorkPool

    configure_logging()
    if settings.public_base_url:
        log.warning("FINDIMAGE_PUBLIC_BASE_URL is ignored in Socket Mode (no web server); uploading images")
    work = WorkPool.from_settings(settings)
    readiness = Readiness()  # not ready until the models are loaded; alive (/healthz) from now on
    monitoring = serve_monitoring(settings, readiness, lambda: {"queued": work.pending})
    app = create_app(settings, work=work)  # loads the models before connecting
    readiness.watch(readiness_probe(settings, app.services.searcher))
    handler = SocketModeHandler(app, settings.slack_app_token, ping_interval=settings.socket_ping_seconds)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    handler.connect()
    log.info("findimage bot connected over Socket Mode")
    stop.wait()
    log.info("stopping: no new requests; finishing the queued answers")
    handler.close()  # Slack sends what this connection no longer takes to the other replicas' connections
    work.drain(DRAIN_SECONDS)
    if app.services.memory is not None:  # what it holds stays kept: the next start takes it back
        app.services.memory.stop()
    if monitoring is not None:
        monitoring.close()
    return EXIT_OK


def gunicorn_level() -> dict[str, str]:
    """gunicorn's error log at the level the process logs at (FINDIMAGE_LOG_LEVEL), where findimage set it."""
    return {"loglevel": logging.getLevelName(logs.level()).lower()} if logs.configured() else {}


class StartFailure:
    """What stopped the HTTP worker's start (a model, the store), passed back to `findimage bot`.

    The worker is forked from gunicorn's arbiter, which is this process. A worker that cannot start
    writes its error here and exits with gunicorn's "App failed to load" code: the arbiter halts at once,
    without a traceback and without starting another worker, and `findimage bot` says the sentence last,
    after gunicorn's shutdown lines, and exits with the error's code.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)

    def leave(self, exc: FindimageError) -> None:
        problems = exc.problems if isinstance(exc, ConfigError) else None
        os.write(self._write, json.dumps({"problems": problems, "message": str(exc),
                                          "exit_code": exc.exit_code}).encode())

    def take(self) -> FindimageError | None:
        """The error a worker left, if one did; closes the pipe (call once, after gunicorn stopped)."""
        os.close(self._write)
        try:
            data = os.read(self._read, 1 << 20)
        except BlockingIOError:
            return None
        finally:
            os.close(self._read)
        if not data:
            return None
        left = json.loads(data)
        if left["problems"] is not None:
            return ConfigError(left["problems"])
        exc = FindimageError(left["message"])
        exc.exit_code = left["exit_code"]
        return exc


class WebServer(BaseApplication):
    """gunicorn serving bot.web's app (built by bot.app); the worker builds it from the settings it was started with."""

    def __init__(self, settings: Settings, options: dict | None = None, failure: StartFailure | None = None):
        self.settings = settings
        self.failure = failure
        self.options = {"bind": f":{settings.port}", **GUNICORN_OPTIONS, "worker_exit": drain_answers,
                        **gunicorn_level(), **(options or {})}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> WebApp:
        from .app import configure_logging, ready_app
        configure_logging()
        try:
            return ready_app(self.settings)
        except FindimageError as exc:
            if self.failure is None:
                raise
            self.failure.leave(exc)
            sys.exit(Arbiter.APP_LOAD_ERROR)


def run_http(settings: Settings, options: dict | None = None) -> int:
    """Serve HTTP mode on PORT until SIGTERM (gunicorn exits the process itself when it stops); a worker
    that cannot start raises its error here. `options`: gunicorn settings over GUNICORN_OPTIONS."""
    with workers_metrics(settings) as folder:
        return _serve_http(settings, options, folder)


def _serve_http(settings: Settings, options: dict | None, folder: Path | None) -> int:
    """run_http within its workers' metrics `folder` (workers_metrics)."""
    if settings.metrics_port is not None:
        log.warning("FINDIMAGE_METRICS_PORT is ignored in HTTP mode: /metrics, /healthz and /readyz are served "
                    "on PORT")
    failure, arbiter = StartFailure(), os.getpid()
    try:
        WebServer(settings, {"child_exit": forget_dead_workers(folder), **(options or {})}, failure=failure).run()
    except SystemExit:
        if os.getpid() != arbiter:  # a worker (forked in there) leaving: its exit code is gunicorn's
            raise
        left = failure.take()
        if left is None:
            raise
        raise left from None
    return EXIT_OK

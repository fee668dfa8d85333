"""`findimage bot`: Socket Mode when SLACK_APP_TOKEN is set, else the HTTP server (gunicorn, started here).

HTTP mode runs one gunicorn process with threads, so the models are loaded once and every request
thread shares them; the settings below are the whole web server configuration (the Procfile's `web:`
line is just `findimage bot`).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger

from findimage.config import ConfigError, Settings, report_problems, require_slack
from findimage.errors import EXIT_OK, EXIT_USAGE, FindimageError

__all__ = ["EXIT_OK", "EXIT_USAGE", "run"]
log = logging.getLogger("bot")


class AccessLog(Logger):
    """gunicorn's logger, with request lines and referers in the access log cut at the `?`.

    An image link's query string (`?expires=..&v=..&sig=..`) shows that image to anyone for a week, so
    whoever reads the log must not be able to copy it from there; a browser that opened a link also sends
    it as the referer of its next request (the favicon). Nothing the bot serves needs a query string.
    """

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = " ".join((environ.get("REQUEST_METHOD", "-"), without_query(environ.get("RAW_URI", "")),
                               environ.get("SERVER_PROTOCOL", "-")))
        atoms["q"] = "-"
        atoms["f"] = without_query(atoms.get("f", "-"))
        return atoms


def without_query(uri: str) -> str:
    return uri.split("?", 1)[0]


# One worker process (the models are loaded once), 16 request threads (Slack's acks must not queue
# behind image links), 120 s for a slow image render, 30 s on SIGTERM to finish answers in progress.
GRACEFUL_SECONDS = 30
GUNICORN_OPTIONS = {"worker_class": "gthread", "workers": 1, "threads": 16, "timeout": 120,
                    "graceful_timeout": GRACEFUL_SECONDS, "accesslog": "-", "logger_class": AccessLog}
# Of the graceful time, what the answers queued after their acks may still use; the rest is for the
# requests in flight, which gunicorn finishes first, and for exiting before the arbiter's SIGKILL.
DRAIN_SECONDS = GRACEFUL_SECONDS - 5


def drain_answers(server, worker) -> None:
    """gunicorn's worker_exit hook: the worker stopped accepting requests; finish the queued answers."""
    work = getattr(getattr(worker, "wsgi", None), "work", None)
    if work is not None:
        work.drain(DRAIN_SECONDS)
    memory = getattr(getattr(worker, "wsgi", None), "memory", None)
    if memory is not None:  # what it holds stays kept: the next start on this host takes it back at once
        memory.stop()


def run(settings: Settings) -> int:
    """Serve until stopped; a start that cannot succeed ends with its sentence on stderr and its exit code
    (EXIT_USAGE for settings to fix, EXIT_UNAVAILABLE for Slack out of reach)."""
    from .credentials import check_slack
    from .wsgi import require_http_mode

    try:
        require_slack(settings)
        if not settings.slack_app_token:
            require_http_mode(settings)
        # Before any model loads (a minute on a small server) and before gunicorn forks its worker.
        check_slack(settings)
        if settings.slack_app_token:
            return run_socket_mode(settings)
        return run_http(settings)
    except FindimageError as exc:
        report(exc)
        return exc.exit_code


def report(exc: FindimageError) -> None:
    if isinstance(exc, ConfigError):
        report_problems(exc.problems)
    else:
        print(f"findimage: {exc}", file=sys.stderr)


def run_socket_mode(settings: Settings) -> int:
    """Connect out to Slack over a WebSocket: no public URL needed, works from behind a firewall."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from .app import configure_logging, create_app
    from .work import WorkPool

    configure_logging()
    if settings.public_base_url:
        log.warning("FINDIMAGE_PUBLIC_BASE_URL is ignored in Socket Mode (no web server); uploading images")
    work = WorkPool.from_settings(settings)
    app = create_app(settings, work=work)  # loads the models before connecting
    handler = SocketModeHandler(app, settings.slack_app_token)
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
    return EXIT_OK


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
    """gunicorn serving bot.wsgi's app; the worker builds it from the settings it was started with."""

    def __init__(self, settings: Settings, options: dict | None = None, failure: StartFailure | None = None):
        self.settings = settings
        self.failure = failure
        self.options = {"bind": f":{settings.port}", **GUNICORN_OPTIONS, "worker_exit": drain_answers,
                        **(options or {})}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import configure_logging
        from .wsgi import ready_app

        configure_logging()
        try:
            return ready_app(self.settings)
        except FindimageError as exc:
            if self.failure is None:
                raise
            self.failure.leave(exc)
            sys.exit(Arbiter.APP_LOAD_ERROR)


def run_http(settings: Settings) -> int:
    """Serve HTTP mode on PORT until SIGTERM (gunicorn exits the process itself when it stops); a worker
    that cannot start raises its error here."""
    failure, arbiter = StartFailure(), os.getpid()
    try:
        WebServer(settings, failure=failure).run()
    except SystemExit:
        if os.getpid() != arbiter:  # a worker (forked in there) leaving: its exit code is gunicorn's
            raise
        left = failure.take()
        if left is None:
            raise
        raise left from None
    return EXIT_OK

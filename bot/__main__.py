"""`findimage bot` / `python -m bot`: Socket Mode when SLACK_APP_TOKEN is set, else the HTTP server.

HTTP mode runs the Procfile's `web:` command (gunicorn, one process with threads, so the models are
loaded once), so both ways of starting it behave the same.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from findimage.config import ConfigError, load_settings_or_report, require_slack

log = logging.getLogger("bot")
PROCFILE = Path(__file__).resolve().parents[1] / "Procfile"
EXIT_OK, EXIT_USAGE = 0, 2


def run(settings) -> int:
    try:
        require_slack(settings)
        if settings.slack_app_token:
            return run_socket_mode(settings)
        return run_http(settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"findimage: configuration problem: {problem}", file=sys.stderr)
        return EXIT_USAGE


def run_socket_mode(settings) -> int:
    """Connect out to Slack over a WebSocket: no public URL needed, works from behind a firewall."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from .app import configure_logging, create_app

    configure_logging()
    app = create_app(settings)  # loads the models before connecting
    handler = SocketModeHandler(app, settings.slack_app_token)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    handler.connect()
    log.info("findimage bot connected over Socket Mode")
    stop.wait()
    log.info("stopping")
    handler.close()
    return EXIT_OK


def web_command(port: int) -> list[str]:
    """The Procfile's `web:` command with $PORT filled in."""
    for line in PROCFILE.read_text().splitlines():
        if line.startswith("web:"):
            return shlex.split(line[len("web:"):].replace("$PORT", str(port)))
    raise ConfigError([f"{PROCFILE} has no web: line"])


def run_http(settings) -> int:
    """Replace this process with gunicorn serving bot.wsgi:create() on PORT (the settings are read again there)."""
    from .wsgi import require_http_mode

    require_http_mode(settings)
    argv = web_command(settings.port)
    argv = [sys.executable, "-m", "gunicorn", *argv[1:]] if argv[0] == "gunicorn" else argv
    os.execv(argv[0], argv)
    return EXIT_OK  # not reached


def main() -> int:
    settings = load_settings_or_report()
    return EXIT_USAGE if settings is None else run(settings)


if __name__ == "__main__":
    sys.exit(main())

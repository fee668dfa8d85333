"""The bot's log as an operator's collector reads it: with FINDIMAGE_LOG_FORMAT=json every line the
deployed bot writes to stderr is a JSON object, gunicorn's error and access lines included, at DEBUG too;
the lines of one Slack request carry its ids into its answer; a token typed into a command never
appears; FINDIMAGE_LOG_LEVEL=WARNING leaves out every INFO line."""
from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from bot_support import ALICE, CHANNEL, BotProcess, free_port, process_env, slack_env

FINDIMAGE = str(Path(sys.executable).parent / "findimage")


def json_lines(lines: list[str]) -> list[dict]:
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n" + "\n".join(lines)) from None
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    return entries


def bot_process(argv: list[str], env: dict, emu, tmp_path, **settings: str) -> BotProcess:
    values = process_env({**env, **slack_env(emu)}, PYTHONUNBUFFERED="1", FINDIMAGE_LOG_FORMAT="json", **settings)
    return BotProcess(argv, values, cwd=tmp_path, stderr_apart=True)


def wait_until_ready(port: int, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                return answer.read().decode()
        except OSError:  # not listening yet, its worker still loading the models, or not ready (503)
            assert time.monotonic() < deadline, "the bot did not become ready (/readyz)"
            time.sleep(0.2)


def request_lines(entries: list[dict]) -> list[dict]:
    """The lines of the one command sent, found by the request id of the line that logged it."""
    (command,) = [e for e in entries if e["logger"] == "bot.handlers.command" and "command from" in e["message"]]
    return [e for e in entries if e.get("request_id") == command["request_id"]]


def test_http_mode_in_json_logs_gunicorn_and_each_request_as_json_lines_without_secrets(indexed, env, emu,
                                                                                          tmp_path):
    port = free_port()
    web = bot_process([FINDIMAGE, "bot"], env, emu, tmp_path, PORT=str(port), FINDIMAGE_LOG_LEVEL="DEBUG")
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        ready = wait_until_ready(port)
        base = f"http://127.0.0.1:{port}/slack/events"
        ack = emu.send_slash_command(base, text=f"stage {emu.bot_token}", channel_id=CHANNEL, user_id=ALICE)
        emu.wait_for_upload(CHANNEL, timeout=30)
        forged = emu.send_slash_command(base, text="x", signing_secret="not-it")
    finally:
        status = web.stop()
    web.read_to_end()

    assert status == 0 and "7 documents" in ready and ack.status == 200 and forged.status == 401
    assert web.stdout_lines == [], "nothing but the log, and that on stderr"
    entries = json_lines(web.stderr_lines)
    assert {e["level"] for e in entries} >= {"DEBUG", "INFO", "WARNING"}
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
    access = {(e["method"], e["path"], e["status"]) for e in entries if e["logger"] == "gunicorn.access"}
    assert {("GET", "/readyz", 200), ("POST", "/slack/events", 200), ("POST", "/slack/events", 401)} <= access
    ours = request_lines(entries)
    assert {e["channel_id"] for e in ours} == {CHANNEL}
    assert any(e["logger"].startswith("slack_sdk") and "files" in e["message"] for e in ours), \
        "the answer's uploads, on the work pool, name the request too"
    everything = "\n".join(web.lines)
    assert emu.bot_token not in everything and emu.signing_secret not in everything
    assert "stage [redacted]" in everything


def test_socket_mode_in_json_logs_json_lines_with_the_request_ids_and_no_token(indexed, env, emu, tmp_path):
    bot = bot_process([sys.executable, "-m", "bot"], env, emu, tmp_path, SLACK_APP_TOKEN=emu.app_token,
                      SLACK_SIGNING_SECRET="", FINDIMAGE_LOG_LEVEL="debug")
    try:
        emu.wait_for_socket_client(timeout=90)
        bot.wait_for_line("connected over Socket Mode")
        emu.socket_slash_command(f"stage {emu.app_token}", user_id=ALICE, channel_id=CHANNEL)
        emu.wait_for_upload(CHANNEL, timeout=30)
    finally:
        status = bot.stop()
    bot.read_to_end()

    assert status == 0
    assert bot.stdout_lines == []
    entries = json_lines(bot.stderr_lines)
    assert {e["level"] for e in entries} >= {"DEBUG", "INFO"}
    assert {e["channel_id"] for e in request_lines(entries)} == {CHANNEL}
    everything = "\n".join(bot.lines)
    assert emu.app_token not in everything and emu.bot_token not in everything


def test_at_warning_the_bot_and_gunicorn_log_no_info_line(indexed, env, emu, tmp_path):
    port = free_port()
    web = bot_process([FINDIMAGE, "bot"], env, emu, tmp_path, PORT=str(port), FINDIMAGE_LOG_LEVEL="WARNING")
    try:
        wait_until_ready(port)
        emu.send_slash_command(f"http://127.0.0.1:{port}/slack/events", text="stage", channel_id=CHANNEL)
        emu.wait_for_upload(CHANNEL, timeout=30)
    finally:
        status = web.stop()
    web.read_to_end()

    assert status == 0
    assert {e["level"] for e in json_lines(web.stderr_lines)} <= {"WARNING", "ERROR", "CRITICAL"}

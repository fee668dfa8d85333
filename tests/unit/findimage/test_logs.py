"""Log lines as an operator's collector reads them: one JSON object per line with the documented fields,
the ids of the request or pass, and never a secret, in JSON or text."""
from __future__ import annotations

import io
import json
import logging
import sys
import threading
from datetime import datetime, timedelta

import pytest

from findimage import logs
from findimage.config import ConfigError, load_settings, log_options
from findimage.logs import CarryingExecutor, JsonFormatter, StderrLines, TextFormatter

TOKEN = "xoxb-12345-67890-AbCdEfGhIjKlMnOp"
PASSWORD = "correct-horse-battery-staple"


def record(message: str, *args, level: int = logging.INFO, exc_info=None, name: str = "bot.answering",
           **extra) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


def json_of(made: logging.LogRecord) -> dict:
    line = JsonFormatter().format(made)
    assert "\n" not in line and "\r" not in line
    return json.loads(line)


def failure(text: str):
    try:
        raise RuntimeError(text)
    except RuntimeError:
        return sys.exc_info()


def test_a_json_line_has_time_in_utc_level_logger_and_message():
    entry = json_of(record("answered %d match(es) in %s", 5, "C0PHOTOS", level=logging.WARNING))

    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["level"] == "WARNING" and entry["logger"] == "bot.answering"
    assert entry["message"] == "answered 5 match(es) in C0PHOTOS"
    assert entry["time"].endswith("Z")
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() == timedelta(0) and abs(datetime.now(when.tzinfo) - when) < timedelta(minutes=1)


def test_an_exception_is_one_escaped_line_and_a_made_up_line_in_a_name_stays_inside_its_message():
    entry = json_of(record("cannot read %s", 'x.jpg\n{"level": "INFO", "message": "forged"}\u2028',
                           exc_info=failure("broken\nimage")))

    assert entry["message"] == 'cannot read x.jpg\n{"level": "INFO", "message": "forged"}\u2028'
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert entry["exc_info"].endswith("RuntimeError: broken\nimage")
    assert "\u2028" not in JsonFormatter().format(record("a\u2028b\x9bc"))  # line separators and C1 controls escaped


def test_the_ids_of_the_request_follow_its_work_to_other_threads():
    seen: list[dict] = []
    with logs.ids(request_id="ab12cd34", channel_id="C0PHOTOS"):
        inside = json_of(record("acked"))
        with CarryingExecutor(max_workers=1) as pool:
            pool.submit(lambda: seen.append(json_of(record("answered")))).result()
        thread = threading.Thread(target=logs.carried(lambda: seen.append(json_of(record("uploaded")))))
        thread.start()
        thread.join()
    after = json_of(record("idle"))

    assert inside["request_id"] == "ab12cd34" and inside["channel_id"] == "C0PHOTOS"
    assert [(e["request_id"], e["channel_id"]) for e in seen] == [("ab12cd34", "C0PHOTOS")] * 2
    assert "request_id" not in after and "channel_id" not in after


def test_an_id_given_with_extra_wins_and_nothing_undocumented_is_added():
    with logs.ids(pass_id="0123456789ab"):
        entry = json_of(record("bucket done", pass_id="fedcba987654", user="U0ALICE"))
    assert entry["pass_id"] == "fedcba987654" and "user" not in entry


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_no_secret_reaches_a_line_in_the_message_or_the_exception(formatter):
    logs.keep_out(PASSWORD, "short")  # "short": too short to cut out of every line
    line = formatter.format(record("connecting with %s and %s", PASSWORD, TOKEN,
                                   exc_info=failure(f"refused xapp-1-A0APP-1-secret-app-token {PASSWORD}")))
    link = formatter.format(record("https://bot.example/images/a.jpg?expires=1700000000&v=1&sig=0f3a9c77e1 sent "
                                   "to https://hooks.slack.com/commands/T0/123/XyZsecret, short"))

    for secret in (PASSWORD, TOKEN, "xapp-1-A0APP-1-secret-app-token", "0f3a9c77e1", "XyZsecret"):
        assert secret not in line + link
    assert line.count(logs.REDACTED) == 4
    assert "?expires=1700000000&v=1&sig=[redacted]" in link and "https://hooks.slack.com/[redacted]" in link
    assert link.endswith("short") or link.endswith('short"}')


def test_the_secret_settings_are_kept_out_of_the_log_once_read(tmp_path):
    load_settings({"SLACK_BOT_TOKEN": "xoxb-from-settings-1234", "FINDIMAGE_URL_SIGNING_KEY": "k" * 40,
                   "FINDIMAGE_QUEUE_URL": "redis://:p%40ss-w0rd-here@127.0.0.1:6379/0"}, env_file=None)
    line = JsonFormatter().format(record("%s %s %s", "k" * 40, "p@ss-w0rd-here", "p%40ss-w0rd-here"))

    assert "kkkk" not in line and "w0rd" not in line and line.count(logs.REDACTED) == 3


def test_text_lines_keep_their_format_with_control_characters_escaped():
    formatter = TextFormatter()
    line = formatter.format(record("cannot read %s", "a\nb.jpg", name="indexer.embedding"))

    assert line.endswith(" INFO indexer.embedding: cannot read a\\nb.jpg")
    datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_what_something_writes_to_stderr_itself_becomes_json_lines():
    real = io.StringIO()
    stderr = StderrLines(real)
    print("usage: findimage [-h]", file=stderr)
    stderr.write("a warning in two ")
    stderr.write("parts\r\nTraceback (most recent call last):\n  File \"x\"\n\n")
    stderr.write("no newline yet")
    before_close = real.getvalue()
    stderr.close()

    entries = [json.loads(line) for line in real.getvalue().splitlines()]
    assert [e["message"] for e in entries] == ["usage: findimage [-h]", "a warning in two parts",
                                               "Traceback (most recent call last):", '  File "x"', "no newline yet"]
    assert {(e["level"], e["logger"]) for e in entries} == {("WARNING", "stderr")}
    assert "no newline yet" not in before_close
    assert not stderr.isatty()  # progress bars are not drawn into the log


def test_the_log_level_and_format_are_read_in_any_case_and_a_bad_value_is_one_sentence():
    assert log_options({"FINDIMAGE_LOG_LEVEL": "debug", "FINDIMAGE_LOG_FORMAT": "JSON"}, env_file=None) == (
        "DEBUG", "json")
    assert log_options({}, env_file=None) == (None, "text")
    assert log_options({"FINDIMAGE_LOG_LEVEL": "loud", "FINDIMAGE_LOG_FORMAT": "xml"}, env_file=None) == (None, "text")
    with pytest.raises(ConfigError) as refused:
        load_settings({"FINDIMAGE_LOG_LEVEL": "loud"}, env_file=None)
    assert refused.value.problems == ["FINDIMAGE_LOG_LEVEL='loud' must be one of: DEBUG, INFO, WARNING, ERROR."]

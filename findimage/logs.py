"""The log of every findimage process: its format (FINDIMAGE_LOG_FORMAT), its level (FINDIMAGE_LOG_LEVEL),
the ids of the request or pass a line belongs to, and no secret in any line.

`text` is one line per record: time, level, logger, message (control characters escaped: file names come
from whoever fills the archive or posts in Slack, and a newline in one would write a made-up line).
`json` is one JSON object per line for log collectors, and then everything the process writes to stderr
is one: the command's own sentences (`tell`), what libraries print, warnings, uncaught exceptions, and
gunicorn's lines (bot.server). Results stay on stdout, as they are.

Secrets never reach the log: every line, in both formats, goes through `redact` (the values of the
secret settings, Slack tokens, signed link signatures, Slack's response URLs).
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import io
import json
import logging
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
FORMATS = ("text", "json")
# The fields a JSON line may carry beyond time, level, logger, message and exc_info: the ids of what it
# belongs to, and an HTTP access line's request (bot.server).
IDS = ("request_id", "channel_id", "pass_id")
FIELDS = (*IDS, "method", "path", "status")
# Libraries whose INFO lines are diagnostics of their own loading, logged only at DEBUG: faiss says at every
# start that it could not load its AVX2 build, which reads like a failure and is none.
DEBUG_ONLY = ("faiss.loader",)
STRAY = "stderr"  # the logger named in a JSON line for what something wrote to stderr itself
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter values are not cut out of lines: they would cut ordinary words

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Left as they are by json.dumps(ensure_ascii=False), and yet line breaks or terminal controls to some
# readers (U+2028/9 in JavaScript, C1 controls in terminals); lone surrogates are file names' undecodable bytes.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9-]{6,}"), REDACTED),  # Slack tokens: xoxb-, xoxp-, xapp-, ...
    # A signed image link's signature (bot.image_links), a Socket Mode URL's ticket: whoever copies it gets in.
    (re.compile(r"([?&](?:sig|signature|ticket|token)=)[^&\s\"'<>]+"), rf"\1{REDACTED}"),
    # Response URLs and webhooks: whoever holds one can post into the channel.
    (re.compile(r"(https://hooks\.slack\.com/)[^\s\"'<>]+"), rf"\1{REDACTED}"),
)


def printable(text: str) -> str:
    """`text` with control characters (newlines among them) shown as escapes, on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                                             else f"\\u{ord(m.group()):04x}"), text)


# ---- secrets ------------------------------------------------------------------------------------
class _Secrets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: frozenset[str] = frozenset()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            added = self.values | {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
            if added != self.values:
                self.values = frozenset(added)
                # Longest first: a secret that contains another is cut whole.
                self.pattern = re.compile("|".join(re.escape(v) for v in sorted(added, key=len, reverse=True)))


_secrets = _Secrets()


def keep_out(*values: str | None) -> None:
    """Values (tokens, keys, passwords) no log line may show, from now on: config.load_settings gives
    every secret setting's value here."""
    _secrets.add([v for v in values if v])


def redact(text: str) -> str:
    """`text` without the values given to `keep_out`, Slack tokens, signatures and response URLs."""
    pattern = _secrets.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for found, replacement in _PATTERNS:
        text = found.sub(replacement, text)
    return text


# ---- ids ----------------------------------------------------------------------------------------
_ids: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "findimage_log_ids", default=MappingProxyType({}))


def new_id(length: int = 8) -> str:
    return uuid.uuid4().hex[:length]


@contextlib.contextmanager
def ids(**values: str | None) -> Iterator[None]:
    """Lines logged inside the block name these ids (request_id, channel_id, pass_id; None: not known),
    also in work handed to other threads with `carried` or a `CarryingExecutor`."""
    token = _ids.set({**_ids.get(), **{name: value for name, value in values.items() if value}})
    try:
        yield
    finally:
        _ids.reset(token)


def current_ids() -> dict[str, str]:
    return dict(_ids.get())


def carried(job: Callable[..., Any]) -> Callable[..., Any]:
    """`job`, run with this thread's ids where another thread runs it (threads start without them)."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(job, *args, **kwargs)


class CarryingExecutor(ThreadPoolExecutor):
    """A thread pool whose jobs keep the ids of the thread that submitted them."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(carried(fn), *args, **kwargs)


# ---- formats ------------------------------------------------------------------------------------
class TextFormatter(logging.Formatter):
    """Today's lines: time, level, logger, message with control characters escaped (a traceback below it
    keeps its own lines); secrets redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (ISO 8601, UTC), level, logger, message, exc_info
    (the traceback) where there is one, and the FIELDS known for it; secrets redacted in every value."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        known = _ids.get()
        for name in FIELDS:
            value = getattr(record, name, None) or known.get(name)
            if value is not None:
                entry[name] = value
        return json_line({key: redact(value) if isinstance(value, str) else value for key, value in entry.items()})


def json_line(entry: Mapping[str, Any]) -> str:
    text = json.dumps(entry, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Redacting(logging.Formatter):
    """Another formatter's lines (gunicorn's, in text format), with secrets redacted."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


# ---- the process's set-up -----------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """How this process logs: what a child process (findimage.models.reader_process) is started with."""

    format: str = "text"
    level: int = logging.WARNING
    secrets: tuple[str, ...] = ()


class _Handler(logging.StreamHandler):
    """The root handler findimage installs (told apart from a host's, e.g. pytest's)."""


_setup: Setup | None = None
_stream: TextIO | None = None  # the real stderr, where JSON lines go while sys.stderr is StderrLines


def configure(log_format: str = "text", level: int = logging.WARNING) -> None:
    """The root logger's handler on stderr in `log_format`, at `level`; in json, sys.stderr made into
    JSON lines too, warnings and uncaught exceptions logged. Once per process: later calls change nothing
    (set_level does), nor does any call where the host (pytest, an embedding application) configured
    logging already."""
    global _setup, _stream
    root = logging.getLogger()
    if _setup is not None or root.handlers:
        return
    _setup = Setup(log_format, level)
    _stream = sys.stderr
    handler = _Handler(_stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    _set_levels(level)
    logging.captureWarnings(True)  # warnings.warn(...) as log records (logger py.warnings), not raw stderr
    if log_format == "json":
        lines = StderrLines(_stream)
        sys.stderr = lines
        atexit.register(lines.close)  # a last line written without its newline
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def configured() -> bool:
    """Whether findimage configured this process's log (not a host such as pytest)."""
    return _setup is not None


def set_level(level: int) -> None:
    global _setup
    if _setup is not None:
        _setup = Setup(_setup.format, level)
        _set_levels(level)


def _set_levels(level: int) -> None:
    logging.getLogger().setLevel(level)
    for name in DEBUG_ONLY:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)


def level() -> int:
    return logging.getLogger().getEffectiveLevel()


def log_format() -> str:
    return _setup.format if _setup is not None else "text"


def snapshot() -> Setup:
    """This process's set-up and secrets, for a child process to log alike (`apply` there)."""
    setup = _setup or Setup(level=level())
    return Setup(setup.format, setup.level, tuple(_secrets.values))


def apply(setup: Setup) -> None:
    """In a child process: log as the parent that took the `snapshot`."""
    keep_out(*setup.secrets)
    configure(setup.format, setup.level)


def stderr() -> TextIO:
    """Where log lines go: the process's stderr (the real one while sys.stderr is StderrLines)."""
    return _stream if _stream is not None else sys.stderr


def formatter(foreign: logging.Formatter | None = None) -> logging.Formatter:
    """The formatter of this process's lines; in text format a library's own (`foreign`), redacted."""
    if log_format() == "json":
        return JsonFormatter()
    return Redacting(foreign) if foreign is not None else TextFormatter()


def adopt(logger: logging.Logger) -> None:
    """A library's logger with handlers of its own on stderr or stdout (gunicorn's): those write where and
    as this process's lines are written."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(stderr())
            handler.setFormatter(formatter(handler.formatter))


def tell(line: str, level: int = logging.ERROR, logger: str = "findimage") -> None:
    """A line for whoever runs the command, on stderr, whatever the log level: as it is in text format
    (`findimage: <sentence>`, `failed: <path>: <reason>`), a JSON line in json format."""
    if log_format() != "json":
        print(redact(line), file=sys.stderr, flush=True)
        return
    record = logging.LogRecord(logger, level, "", 0, line, None, None)
    _write(JsonFormatter().format(record))


def _write(line: str) -> None:
    stream = stderr()
    stream.write(line + "\n")
    stream.flush()


class StderrLines(io.TextIOBase):
    """sys.stderr in json format: each line something writes there itself (a library's print, argparse's
    usage, a child's traceback) becomes a JSON line of the logger `stderr`, at WARNING."""

    def __init__(self, stream: TextIO):
        super().__init__()
        self._stream = stream
        self._partial = ""
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = re.split(r"\r\n|\r|\n", self._partial + text)
            for line in lines:
                self._emit(line)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:  # the stream stays open: the real stderr
        with self._lock:
            if self._partial:
                self._emit(self._partial)
                self._partial = ""

    def _emit(self, line: str) -> None:
        if line.strip():
            record = logging.LogRecord(STRAY, logging.WARNING, "", 0, line, None, None)
            self._stream.write(JsonFormatter().format(record) + "\n")
            self._stream.flush()

    def isatty(self) -> bool:  # nothing draws progress bars into JSON lines
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
    logging.getLogger("findimage").critical("uncaught %s", kind.__name__, exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("findimage").error("uncaught %s in %s", args.exc_type.__name__, name,
                                         exc_info=args.exc_value or True)

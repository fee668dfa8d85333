"""How every findimage process starts: files only its own user can read, log lines nobody can forge.

The data folder holds the archive's paths and their embeddings (from which pictures can be roughly
recovered), the indexer's state and lock files: with the default umask (022) all of them would be
readable by every user of the machine. And file names come from whoever fills the archive or posts in
Slack: a name with a newline in it would write a second, made-up line into the log.
"""
from __future__ import annotations

import logging
import os
import re

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PRIVATE_UMASK = 0o077  # folders 0700, files 0600
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with control characters (newlines among them) shown as escapes, on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                                             else f"\\u{ord(m.group()):04x}"), text)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in the message (a traceback below it keeps its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def start(level: int = logging.WARNING) -> None:
    """Private file modes for everything this process writes, and escaped log lines (unless the host,
    e.g. pytest, configured logging already)."""
    os.umask(PRIVATE_UMASK)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(EscapingFormatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(level)

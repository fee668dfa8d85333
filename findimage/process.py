"""How every findimage process starts: files only its own user can read, and its log (findimage.logs).

The data folder holds the archive's paths and their embeddings (from which pictures can be roughly
recovered), the indexer's state and lock files: with the default umask (022) all of them would be
readable by every user of the machine.
"""
from __future__ import annotations

import logging
import os

from findimage import logs
from findimage.config import log_options
from findimage.logs import printable

__all__ = ["PRIVATE_UMASK", "log_level", "printable", "start"]
PRIVATE_UMASK = 0o077  # folders 0700, files 0600


def start(default_level: int = logging.WARNING, verbose: bool = False) -> None:
    """Private file modes for everything this process writes, and its log on stderr as FINDIMAGE_LOG_FORMAT
    asks, at FINDIMAGE_LOG_LEVEL (else `default_level`; `verbose`: INFO at least). The log is configured
    once, before anything is written to stderr (a bad setting's sentence too), and not where the host
    (pytest) configured logging already."""
    os.umask(PRIVATE_UMASK)
    configured_level, log_format = log_options()
    logs.configure(log_format, _level(configured_level, default_level, verbose))


def log_level(default_level: int, verbose: bool = False) -> None:
    """The level once the command is known (`findimage` runs `start` before it parses its arguments):
    FINDIMAGE_LOG_LEVEL if set, else the command's default; `-v` (verbose) means INFO at least."""
    logs.set_level(_level(log_options()[0], default_level, verbose))


def _level(configured: str | None, default_level: int, verbose: bool) -> int:
    level = logs.LEVELS[configured] if configured else default_level
    return min(level, logging.INFO) if verbose else level

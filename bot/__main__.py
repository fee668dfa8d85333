"""`python -m bot`: the same as `findimage bot` (see bot.server)."""
from __future__ import annotations

import logging
import sys

from findimage import process
from findimage.config import load_settings_or_report

from .server import EXIT_USAGE, run


def main() -> int:
    process.start(logging.INFO)  # the log's format before a settings problem is written
    settings = load_settings_or_report()
    return EXIT_USAGE if settings is None else run(settings)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bot`: the same as `findimage bot` (see bot.server)."""
from __future__ import annotations

import sys

from findimage.config import load_settings_or_report

from .server import EXIT_USAGE, run


def main() -> int:
    settings = load_settings_or_report()
    return EXIT_USAGE if settings is None else run(settings)


if __name__ == "__main__":
    sys.exit(main())

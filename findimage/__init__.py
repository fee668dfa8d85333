"""findimage core: configuration, image preparation, embedders, stores and search.

Shared by the Slack bot (`bot/`) and the archive indexer (`indexer/`); never imports Slack.
"""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

DISTRIBUTION = "findimage"  # pyproject.toml's [project] name


def _version() -> str:
    """pyproject.toml's [project] version, the one place it is written.

    A source checkout reads it from its own pyproject.toml first: an editable install's metadata keeps the
    version it was installed with until it is installed again, so a bumped checkout would answer the old
    one. An installed package (the Docker image) has no pyproject.toml beside it and asks its metadata.
    """
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file).get("project", {})
        if project.get("name") == DISTRIBUTION and isinstance(project.get("version"), str):
            return project["version"]
    except (OSError, tomllib.TOMLDecodeError):
        pass
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"  # neither installed nor in a checkout: say so rather than guess


__version__ = _version()
# Our product token, put first in the User-Agent of our calls to Slack and Elasticsearch (their clients keep
# their own after it): an admin reading a server's or Slack's logs sees which findimage made a request.
USER_AGENT = f"findimage/{__version__}"

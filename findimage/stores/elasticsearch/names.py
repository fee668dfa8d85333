"""The names of every index findimage keeps beside an alias, in one place: its generations
(`<alias>-v<N>`), the bot's seen keys (`<alias>-seen`), the indexing lease (`<alias>-lease`), and the images
remembered from Slack channels (their own alias `<alias>-remembered`, and `<alias>-channels`)."""
from __future__ import annotations

import re


def generation(alias: str, number: int) -> str:
    """The concrete index of generation `number` behind the alias (the first is 1; rebuilds count up)."""
    return f"{alias}-v{number}"


def generations_pattern(alias: str) -> str:
    """Every generation of the alias, as an index pattern."""
    return f"{alias}-v*"


def generation_number(alias: str, index: str) -> int | None:
    """N of `<alias>-v<N>`; None for any other name."""
    found = re.fullmatch(rf"{re.escape(alias)}-v(\d+)", index)
    return int(found.group(1)) if found else None


def seen_index(alias: str) -> str:
    return f"{alias}-seen"


def lease_index(alias: str) -> str:
    return f"{alias}-lease"


def remembered_alias(alias: str) -> str:
    """The alias of the images remembered from channels: a store of its own, which the archive's
    generations pattern (`<alias>-v*`) does not match, so no archive search or rebuild ever touches it."""
    return f"{alias}-remembered"


def channels_index(alias: str) -> str:
    return f"{alias}-channels"

"""The names of every index findimage keeps beside an alias, in one place: its generations
(`<alias>-v<N>`), the bot's seen keys (`<alias>-seen`) and the indexing lease (`<alias>-lease`)."""
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

"""Slack's real payload shapes, from ``tests/fixtures/slack/``: what the emulator builds its payloads from.

Each fixture file is ``{"source": ..., "note": ..., "payload": ...}``: ``payload`` is a shape recorded or
documented by Slack or its SDKs (the file names where), re-typed with the test workspace's ids. The
emulator starts every event, command, interaction and Web API answer from a copy of one of them and only
sets values (ids, timestamps, texts), so it sends no field real Slack does not send and every field it does.

``events_pending/`` holds events the bot does not subscribe to (member_joined_channel), kept for their shape:
tests/integration/bot/test_fixture_replay.py requires every fixture of ``events/`` to be replayed to the bot,
so one moves there (with its replay case) once the bot handles it.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slack"
SLACK_FILE_HOST = "https://files.slack.com"
SLACK_HOOKS_HOST = "https://hooks.slack.com"


@functools.cache
def _document(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def fixture(name: str) -> Any:
    """A fresh copy of the payload of ``tests/fixtures/slack/<name>.json`` (e.g. ``events/message``)."""
    return copy.deepcopy(_document(name)["payload"])


def source(name: str) -> str:
    return _document(name)["source"]


def names() -> list:
    """Every fixture, as ``<folder>/<name>``."""
    return sorted(str(p.relative_to(FIXTURES).with_suffix("")) for p in FIXTURES.rglob("*.json"))


def shape(value: Any) -> Any:
    """The keys of ``value``, recursively (a list by its first element): what a payload's shape is."""
    if isinstance(value, dict):
        return {key: shape(child) for key, child in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def keys_of(name: str, *path: str) -> list:
    """The keys of the object at ``path`` inside a fixture's payload, in the fixture's order."""
    node = _document(name)["payload"]
    for step in path:
        node = node[step][0] if isinstance(node[step], list) else node[step]
    return list(node)

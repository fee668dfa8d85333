"""Fixtures of the bot's tests: the Slack emulator, a bot's settings, the indexed archive, the bot running."""
from __future__ import annotations

import pytest
from bot_support import held_work, serve_bot, slack_env
from slack_emulator import SlackEmulator

from findimage.config import load_settings
from indexer.run import index_once


@pytest.fixture
def emu():
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def bot_settings(env, emu, archive):
    """Settings of a bot talking to the emulator, over the `archive` fixture's photos (not indexed yet)."""
    return load_settings({**env, **slack_env(emu)}, env_file=None)


@pytest.fixture
def indexed(bot_settings):
    """The archive indexed with the tiny test models into the embedded store."""
    summary = index_once(bot_settings, progress=False)
    assert summary.added == 7 and summary.failed == 0
    return bot_settings


@pytest.fixture
def bot(indexed):
    """The bot over HTTP, with the indexed archive, uploading matches as images (the default)."""
    with serve_bot(indexed) as running:
        yield running


@pytest.fixture
def held_bot(indexed):
    """The `bot`, but its answers wait until the test calls `held_bot.work.release()` (see HeldWork)."""
    with held_work() as work, serve_bot(indexed, work=work) as running:
        yield running

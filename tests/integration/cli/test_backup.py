"""`findimage backup` and `findimage restore` on the embedded store, as an admin runs them: a backup made
while the bot and the scheduled indexer run, restored into an empty data folder, answers every search as
before; a restore onto a folder in use, a damaged backup and one made by a newer release are refused in
one sentence."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bot_support import CHANNEL, BotProcess, free_port, process_env, slack_env
from photos import jpeg_bytes
from slack_emulator import SlackEmulator

from findimage import __version__
from findimage.backends import open_remembered
from findimage.records import Posted
from findimage.stores.embedded.schema import SCHEMA_VERSION
from findimage_cli import main

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(600)


def findimage(env: dict, *argv: str) -> subprocess.CompletedProcess:
    """The command as an admin runs it, from a shell whose umask (022) lets everyone read new files."""
    return subprocess.run([sys.executable, "-m", "findimage_cli", *argv], env=process_env(env), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o022))


def in_process(env: dict, *argv: str) -> str:
    """The command's output, run in this process with `env` as its whole findimage environment: the text
    model is loaded here once instead of by one process per search (the commands that back up and restore
    run as the admin runs them, above)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        for key in [k for k in os.environ if k.startswith(("SLACK_", "FINDIMAGE_", "ELASTICSEARCH_"))]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(list(argv)) == 0, argv
    return out.getvalue()


def answers(env: dict) -> dict[str, str]:
    """What `status` counts and what searches answer, archive and remembered images alike."""
    status = in_process(env, "status")
    counted = [line for line in status.splitlines() if line.startswith(("documents:", "remembered:"))]
    found = {"status": "\n".join(counted)}
    searches = {"text": ["search", "a stage with lights", "-k", "7", "--json"],
                "folder": ["search", "mountain", "--folder", "nature", "--json"],
                "remembered": ["search", "whiteboard sprint", "-k", "10", "--channel", CHANNEL, "--json"]}
    for name, argv in searches.items():
        found[name] = in_process(env, *argv)
    return found


@pytest.fixture
def emu():
    with SlackEmulator() as emulator:
        yield emulator


class Served:
    def __init__(self, port: int):
        self.events_url = f"http://127.0.0.1:{port}/slack/events"


def remember_a_photo(emu, bot: Served, env: dict) -> str:
    """`/findimage remember` in the channel, then a photo posted there; its Slack file id once it is kept."""
    emu.send_slash_command(bot.events_url, text="remember", channel_id=CHANNEL)
    emu.wait_for_response(containing="turned on remembering", timeout=30)
    photo = emu.add_file(jpeg_bytes(seed=908), "whiteboard sprint planning.jpg", user="U0BOB")
    event = emu.post_user_message_with_files(CHANNEL, [photo], user="U0BOB")
    assert emu.send_event(bot.events_url, event).status == 200

    def kept() -> bool:
        remembered = open_remembered(settings_of(env))
        try:
            image_id = Posted(CHANNEL, photo["id"], "", "").image_id
            return bool(remembered.registry.posted([image_id])) and remembered.store.get(image_id) is not None
        finally:
            remembered.close()

    emu.wait_for(kept, timeout=60, what="the posted photo remembered")
    return photo["id"]


def settings_of(env: dict):
    from findimage.config import load_settings

    return load_settings(env, env_file=None)


def test_a_backup_made_while_the_bot_and_the_indexer_run_restores_every_answer(env, archive, emu, tmp_path):
    port = free_port()
    indexer = BotProcess([sys.executable, "-m", "findimage_cli", "schedule"],
                         process_env(env, PYTHONUNBUFFERED="1"), cwd=tmp_path)
    bot = BotProcess([sys.executable, "-m", "findimage_cli", "bot"],
                     process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1"), cwd=tmp_path)
    try:
        indexer.wait_for_line("pass done: added 7")
        bot.wait_for_line("findimage bot ready over HTTP")
        file_id = remember_a_photo(emu, Served(port), env)
        before = answers(env)

        made = findimage(env, "backup", str(tmp_path / "backup"))
        refused = findimage(env, "restore", str(tmp_path / "backup"), "--force")
        holder = (tmp_path / "data" / "scheduler.lock").read_text()
        indexer.stop()
        refused_by_the_bot = findimage(env, "restore", str(tmp_path / "backup"), "--force")
    finally:
        indexer.stop()
        bot.stop()

    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"backup of {tmp_path / 'data'} in {tmp_path / 'backup'}: 7 documents, 1 remembered "
                                  f"channel(s) with 1 image(s);")
    assert refused.returncode == 4 and refused.stdout == ""
    assert holder.startswith(f"pid {indexer.process.pid}, since ")
    assert refused.stderr == (f"findimage: findimage processes are using {tmp_path / 'data'} (the scheduled indexer "
                              f"({holder})): stop the bot and the indexer, then restore again.\n")
    assert refused_by_the_bot.stderr == (f"findimage: findimage processes are using {tmp_path / 'data'} (the bot, the "
                                         "indexer or a worker): stop the bot and the indexer, then restore again.\n")
    assert file_id in before["remembered"] and "stage-" in before["text"]
    backup = tmp_path / "backup"
    assert {p.relative_to(backup).as_posix() for p in backup.rglob("*") if p.is_file()} >= {
        "manifest.json", "findimage.sqlite", "vectors.json", "remembered/findimage.sqlite",
        "remembered/channels.sqlite"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [backup, *backup.rglob("*")]
            if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)} == {}
    manifest = json.loads((backup / "manifest.json").read_text())
    assert (manifest["findimage"], manifest["schema"], manifest["documents"]) == (__version__, SCHEMA_VERSION, 7)

    elsewhere = {**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}
    restored = findimage(elsewhere, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored 7 documents, 1 remembered channel(s) with 1 image(s) into "
                                      f"{tmp_path / 'restored'} from {backup} (made ")
    assert answers(elsewhere) == before


@pytest.fixture(scope="module")
def first_indexed() -> dict[str, Path]:
    """The data folder the first test indexed, as `findimage index` left it (filled in by `indexed_data`)."""
    return {}


@pytest.fixture
def indexed_data(env, archive, tmp_path_factory, first_indexed) -> Path:
    """The data folder with the `archive` photos indexed by the command: indexed once per module, then copied
    (modes included) for each test, which may change or replace it."""
    data = Path(env["FINDIMAGE_DATA_DIR"])
    if "data" not in first_indexed:
        assert findimage(env, "index").returncode == 0
        first_indexed["data"] = tmp_path_factory.mktemp("indexed") / "data"
        shutil.copytree(data, first_indexed["data"], symlinks=True)
    else:
        shutil.copytree(first_indexed["data"], data, symlinks=True)
    return data


@pytest.fixture
def backed_up(env, indexed_data, tmp_path) -> Path:
    """A backup of the indexed archive, made by the command."""
    assert findimage(env, "backup", str(tmp_path / "backup")).returncode == 0
    return tmp_path / "backup"


def test_a_damaged_backup_is_refused_in_one_sentence_and_nothing_is_restored(env, backed_up, tmp_path):
    elsewhere = {**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}
    database = backed_up / "findimage.sqlite"
    data = bytearray(database.read_bytes())
    data[-100:] = b"\xff" * 100
    database.write_bytes(bytes(data))

    refused = findimage(elsewhere, "restore", str(backed_up))

    assert refused.returncode == 4
    assert refused.stderr == (f"findimage: The backup in {backed_up} is damaged (findimage.sqlite is not the file the "
                              f"backup was made with ({len(data):,} bytes)): nothing was restored; restore another "
                              "backup.\n")
    assert not (tmp_path / "restored" / "findimage.sqlite").exists()


def test_a_database_sqlite_finds_corrupt_is_refused_even_where_the_manifest_agrees(env, backed_up, tmp_path):
    elsewhere = {**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}
    database = backed_up / "findimage.sqlite"
    data = bytearray(database.read_bytes())
    page = 4096
    data[page * 2 + 8: page * 2 + 400] = bytes(range(256)) + bytes(range(136))  # a b-tree page's cells, scrambled
    database.write_bytes(bytes(data))
    manifest = json.loads((backed_up / "manifest.json").read_text())
    manifest["files"]["findimage.sqlite"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (backed_up / "manifest.json").write_text(json.dumps(manifest))

    refused = findimage(elsewhere, "restore", str(backed_up))

    assert refused.returncode == 4
    assert refused.stderr.startswith(f"findimage: The backup in {backed_up} is damaged (")
    assert refused.stderr.endswith("): nothing was restored; restore another backup.\n")
    assert len(refused.stderr.splitlines()) == 1
    assert not (tmp_path / "restored" / "findimage.sqlite").exists()


def test_a_folder_that_is_no_backup_is_refused(env, tmp_path):
    (tmp_path / "photos").mkdir()
    refused = findimage(env, "restore", str(tmp_path / "photos"))
    assert refused.returncode == 4
    assert refused.stderr == (f"findimage: {tmp_path / 'photos'} is not a findimage backup (it has no manifest.json): "
                              "name a folder `findimage backup` made.\n")


def test_a_backup_made_by_a_newer_release_is_refused(env, backed_up, tmp_path):
    manifest = json.loads((backed_up / "manifest.json").read_text())
    (backed_up / "manifest.json").write_text(json.dumps({**manifest, "findimage": "9.1.0", "schema": 99}))

    refused = findimage({**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}, "restore", str(backed_up))

    assert refused.returncode == 4
    assert refused.stderr == (f"findimage: The backup in {backed_up} was written by findimage 9.1.0 (schema 99); this "
                              f"is findimage {__version__} (schema {SCHEMA_VERSION}): upgrade findimage, or restore a "
                              "backup made by this version.\n")


def test_a_store_that_holds_documents_is_replaced_only_with_force_and_then_kept_aside(env, backed_up, tmp_path):
    data = tmp_path / "data"
    refused = findimage(env, "restore", str(backed_up))
    assert refused.returncode == 4
    assert refused.stderr == (f"findimage: {data} already holds a store (7 documents, 0 remembered channel(s) with 0 "
                              "image(s)): restore into an empty data folder, or add --force to replace it (its files "
                              f"are then kept aside in {data}/replaced-<time>/).\n")

    replaced = findimage(env, "restore", str(backed_up), "--force")

    assert replaced.returncode == 0, replaced.stderr
    (kept,) = data.glob("replaced-*")
    assert replaced.stdout.splitlines()[1] == f"the store it replaced is kept in {kept}: delete it once the restored " \
                                              "one answers"
    assert (kept / "findimage.sqlite").is_file() and not (data / "findimage.sqlite-wal").exists()
    assert "documents:    7" in findimage(env, "status").stdout
    assert findimage(env, "restore", str(backed_up), "--force").returncode == 0
    assert len(list(data.glob("replaced-*"))) == 2, "a second restore keeps the first one's copy too"


def test_a_store_written_by_a_newer_release_is_refused_in_one_sentence_and_left_as_it_was(env, indexed_data,
                                                                                          tmp_path):
    database = tmp_path / "data" / "findimage.sqlite"
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    db.execute("UPDATE meta SET value='0.9.0' WHERE key='findimage_version'")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    checksum = database.read_bytes()

    for argv in (["status"], ["search", "a stage"], ["index"]):
        refused = findimage(env, *argv)
        assert refused.returncode == 4, argv
        assert refused.stderr == (f"findimage: The store in {tmp_path / 'data'} was written by findimage 0.9.0 "
                                  f"(schema 7); this is findimage {__version__} (schema {SCHEMA_VERSION}): upgrade "
                                  "findimage, or restore a backup made by this version.\n"), argv
    assert database.read_bytes() == checksum


def test_a_backup_of_the_previous_release_restores_upgraded(env, tmp_path):
    """A data folder as findimage 0.2.0 left it (tests/fixtures/stores), backed up and restored."""
    old = tmp_path / "data"
    old.mkdir(mode=0o700)
    with gzip.open(ROOT / "tests" / "fixtures" / "stores" / "embedded-0.2.0.sqlite.gz") as fixture:
        (old / "findimage.sqlite").write_bytes(fixture.read())
    made = findimage(env, "backup", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    assert json.loads((tmp_path / "backup" / "manifest.json").read_text())["schema"] == 4

    restored = findimage({**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}, "restore",
                         str(tmp_path / "backup"))

    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(tmp_path / "restored" / "findimage.sqlite") as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert (meta["schema_version"], meta["findimage_version"]) == (str(SCHEMA_VERSION), __version__)
    assert "documents:    3" in findimage({**env, "FINDIMAGE_DATA_DIR": str(tmp_path / "restored")}, "status").stdout

"""Least-privilege API keys on a server with security on: `findimage keys create` makes a bot key, an
indexer key and a backup key; the indexer's key runs real passes (holding the indexing lease) and status,
the bot's key searches and writes seen keys, and every other write, index creation or deletion with the
bot's key is refused in one sentence; the backup key snapshots findimage's indices and does nothing else."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import time
import uuid

import numpy as np
import pytest
from elasticsearch import AuthorizationException, Elasticsearch
from es_support import ES_URL, SecureServer, needs_es, retries_logged

from bot.dedupe import SeenRecently
from findimage.backends import open_remembered
from findimage.config import ElasticsearchSettings, load_settings
from findimage.errors import AccessDenied, ModelError
from findimage.records import ImageDoc, Posted, image_id_for, posted_path
from findimage.stores.base import ChannelState
from findimage.stores.elasticsearch.infer import InferTextEmbedder
from findimage.stores.elasticsearch.lease import LEASE_ID, LeaseDocument
from findimage.stores.elasticsearch.privileges import ensure_key_file, key_is_current
from findimage.stores.elasticsearch.seen import SharedSeen
from findimage.stores.elasticsearch.store import ElasticsearchStore
from findimage_cli import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, main

pytestmark = [*needs_es, pytest.mark.timeout(300)]
KEYS_HINT = ("the indexer needs the indexer's API key and the bot the bot's (`findimage keys create` makes both); "
             "check ELASTICSEARCH_API_KEY.")


@pytest.fixture(scope="session")
def secure_server() -> str:
    """A server of its own with security on (conftest starts it in the background at collection)."""
    if not ES_URL:
        pytest.skip(needs_es[1].kwargs["reason"])
    try:
        return SecureServer.wait()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def as_elastic(secure_server, settings, monkeypatch):
    """The environment of the operator who makes the keys: the elastic superuser."""
    monkeypatch.setenv("ELASTICSEARCH_URL", secure_server)
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", "elastic")
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", SecureServer.password)
    superuser = Elasticsearch(secure_server, basic_auth=("elastic", SecureServer.password))
    yield superuser
    for index in superuser.indices.get(index=f"{settings.index_name}*", allow_no_indices=True):
        superuser.indices.delete(index=index)
    superuser.close()


def _use_key(monkeypatch, key_file) -> None:
    monkeypatch.delenv("ELASTICSEARCH_USERNAME", raising=False)
    monkeypatch.delenv("ELASTICSEARCH_PASSWORD", raising=False)
    monkeypatch.setenv("ELASTICSEARCH_API_KEY_FILE", str(key_file))


def _doc(path: str) -> ImageDoc:
    vector = np.random.default_rng(len(path)).standard_normal(512).astype(np.float32)
    return ImageDoc(image_id_for(path), path, path, vector, "sha", 1, 1.0, 8, 8, time.time(), "m")


def test_each_key_does_its_job_and_the_bot_key_cannot_write(as_elastic, settings, archive, tmp_path, monkeypatch,
                                                             capsys, caplog):
    url, alias = SecureServer.url, settings.index_name
    bot_file, indexer_file, backup_file = tmp_path / "bot.key", tmp_path / "indexer.key", tmp_path / "backup.key"
    argv = ["keys", "create", "--bot-key-file", str(bot_file), "--indexer-key-file", str(indexer_file),
            "--backup-key-file", str(backup_file)]
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out == (f"bot: new key written to {bot_file}\n"
                                       f"indexer: new key written to {indexer_file}\n"
                                       f"backup: new key written to {backup_file}\n")
    assert stat.S_IMODE(os.stat(bot_file).st_mode) == 0o600
    assert main(argv) == EXIT_OK, "a rerun keeps keys that are still valid"
    assert capsys.readouterr().out.count("key still valid in") == 3
    bot_key = bot_file.read_text().strip()

    # The bot's key: a search on an index that does not exist yet neither creates it nor may.
    _use_key(monkeypatch, bot_file)
    assert main(["search", "a photo"]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err == (f"findimage: The Elasticsearch index {alias} does not exist yet: run "
                                       "`findimage index` (or check FINDIMAGE_INDEX).\n")
    bot_store = ElasticsearchStore(Elasticsearch(url, api_key=bot_key),
                                   ElasticsearchSettings(elasticsearch_url=url, index_name=alias))
    with pytest.raises(AccessDenied) as caught:
        bot_store.upsert([_doc("a.jpg")])
    assert str(caught.value) == (f"Elasticsearch at {url} does not allow these credentials "
                                 f"to create the index (403): {KEYS_HINT}")
    assert not as_elastic.indices.exists_alias(name=alias)

    # The bot's key cannot index either: refused at the start of the pass, in one line.
    caplog.clear()
    assert main(["index"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err == (f"findimage: Elasticsearch at {url} does not allow these credentials to write the index {alias} "
                   f"(no create_index, delete_index, manage, write) (403): {KEYS_HINT}\n")
    assert retries_logged(caplog) == [], "refused credentials are reported at once, not retried"

    # The indexer's key: a real pass, status.
    _use_key(monkeypatch, indexer_file)
    assert main(["index"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("added 7, updated 0, moved 0, removed 0, unchanged 0, failed 0")
    assert main(["status"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"index:        {alias} -> {alias}-v1" in out and "documents:    7" in out

    # The bot's key searches the index the indexer made, with the local text model...
    _use_key(monkeypatch, bot_file)
    assert main(["search", "a photo", "-k", "7", "--json"]) == EXIT_OK
    assert len(json.loads(capsys.readouterr().out)) == 7
    # ...its one write is the seen keys its replicas share, create-only, without falling back to memory.
    seen = SharedSeen(Elasticsearch(url, api_key=bot_key), alias, SeenRecently(), url=url)
    with caplog.at_level(logging.WARNING, logger="findimage.stores.elasticsearch.seen"):
        assert seen.first_time("event:EvKEY") is True and seen.first_time("event:EvKEY") is False
        seen.purge()  # as the bot does it: a background delete_by_query of keys older than an hour
    # (only the seen keys' own records: another test's bot may still be logging in this process)
    assert not [r for r in caplog.records if r.name.startswith("findimage.stores.elasticsearch.seen")
                and "memory" in r.getMessage()]
    assert as_elastic.get(index=f"{alias}-seen", id="event:EvKEY")["found"]
    # ...and it may not take the indexing lease, which only the indexer's key holds.
    with pytest.raises(AuthorizationException):
        LeaseDocument(Elasticsearch(url, api_key=bot_key), alias).acquire()
    assert not as_elastic.exists(index=f"{alias}-lease", id=LEASE_ID), "the pass released its lease"
    # ...and otherwise it may write, delete or drop nothing.
    for write, what in ((lambda: bot_store.upsert([_doc("b.jpg")]), "write to the index"),
                        (lambda: bot_store.delete([image_id_for("events/2024/stage-0.jpg")]), "write to the index"),
                        (lambda: bot_store.set_meta("k", "v"), "change the index's metadata"),
                        (bot_store.begin_rebuild, "create the index")):
        with pytest.raises(AccessDenied) as caught:
            write()
        assert str(caught.value) == (f"Elasticsearch at {url} does not allow these credentials "
                                     f"to {what} (403): {KEYS_HINT}")
    # Dropping the archive's generations: Elasticsearch expands `<alias>-v*` to the indices the key may
    # delete, which are only its remembered ones (`<alias>-remembered-v*` does not match): nothing goes.
    try:
        bot_store.drop()
    except AccessDenied:
        pass
    as_elastic.indices.refresh(index=alias)
    assert as_elastic.count(index=alias)["count"] == 7
    assert set(as_elastic.indices.get(index=f"{alias}*")) == {f"{alias}-v1", f"{alias}-lease", f"{alias}-seen"}



def test_the_bot_key_may_run_the_text_model_and_the_indexer_key_may_not(as_elastic, settings, tmp_path):
    # No model is deployed on this server: "not found" proves the key got past authorization.
    alias, url, keys = settings.index_name, SecureServer.url, {}
    for role in ("bot", "indexer"):
        ensure_key_file(as_elastic, tmp_path / role, role, alias)
        keys[role] = (tmp_path / role).read_text().strip()
    bot = InferTextEmbedder(Elasticsearch(url, api_key=keys["bot"]), "no-such-model", url=url, expected_dims=512)
    with pytest.raises(ModelError, match="The text model no-such-model is not in Elasticsearch"):
        bot.embed_texts(["a photo"])
    indexer = InferTextEmbedder(Elasticsearch(url, api_key=keys["indexer"]), "no-such-model", url=url,
                                expected_dims=512)
    with pytest.raises(AccessDenied, match="does not allow these credentials to use the text model"):
        indexer.embed_texts(["a photo"])

    # Neither key reaches another index.
    for key in keys.values():
        with pytest.raises(AccessDenied, match="to read the index"):
            other = ElasticsearchSettings(elasticsearch_url=url, index_name=f"{alias}x")
            ElasticsearchStore(Elasticsearch(url, api_key=key), other).upsert([_doc("c.jpg")])

    # Keys made for another alias are replaced, and the replaced one stops working.
    old = keys["bot"]
    assert ensure_key_file(as_elastic, tmp_path / "bot", "bot", alias + "-renamed")
    assert not key_is_current(as_elastic, old, "bot", alias)
    assert key_is_current(as_elastic, (tmp_path / "bot").read_text().strip(), "bot", alias + "-renamed")


def test_keys_create_needs_a_user_who_may_make_keys(as_elastic, tmp_path, monkeypatch, capsys):
    ensure_key_file(as_elastic, tmp_path / "bot", "bot", "anything")
    _use_key(monkeypatch, tmp_path / "bot")
    assert main(["keys", "create"]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err == (
        f"findimage: Elasticsearch at {SecureServer.url} does not allow these credentials to create API keys (403): "
        "run this as the elastic user (ELASTICSEARCH_USERNAME=elastic and its ELASTICSEARCH_PASSWORD).\n")


def test_the_bot_key_remembers_and_forgets_in_its_own_indices_only(as_elastic, settings, tmp_path, monkeypatch, capsys):
    url, alias = SecureServer.url, settings.index_name
    bot_file, indexer_file = tmp_path / "bot.key", tmp_path / "indexer.key"
    assert main(["keys", "create", "--bot-key-file", str(bot_file), "--indexer-key-file", str(indexer_file)]) == 0
    assert "ELASTICSEARCH_API_KEY" not in capsys.readouterr().out, "no backup key printed beside the key files"
    _use_key(monkeypatch, bot_file)
    as_bot = load_settings(env_file=None)
    remembered = open_remembered(as_bot)  # as the bot starts: its store, created by its key
    now = time.time()
    remembered.registry.save_channel(ChannelState("C0TEAM", "U0ANNA", now, now - 86_400))
    posted = Posted("C0TEAM", "F0PHOTO", f"{now:.6f}", "U0ANNA", "", "photo.png")
    doc = _doc(posted_path("C0TEAM", "F0PHOTO", "photo.png"))
    remembered.add([(dataclasses.replace(doc, image_id=posted.image_id), posted)], "m")
    assert remembered.store.get(posted.image_id) is not None
    assert remembered.forget_channel("C0TEAM") == 1
    as_elastic.indices.refresh(index=f"{alias}-remembered")
    assert as_elastic.count(index=f"{alias}-remembered")["count"] == 0
    assert remembered.registry.channels() == []
    # The archive's index stays out of its reach all the same.
    with pytest.raises(AccessDenied):
        ElasticsearchStore(Elasticsearch(url, api_key=bot_file.read_text().strip()),
                           ElasticsearchSettings(elasticsearch_url=url, index_name=alias)).upsert([doc])


def test_doctor_says_which_of_the_bot_and_the_indexer_the_credentials_may_run(as_elastic, settings, tmp_path,
                                                                              monkeypatch, capsys):
    bot_file, indexer_file, no_file = tmp_path / "bot.key", tmp_path / "indexer.key", tmp_path / "none.key"
    assert main(["keys", "create", "--bot-key-file", str(bot_file), "--indexer-key-file", str(indexer_file)]) == EXIT_OK
    nothing = {"nothing": {"cluster": [], "indices": []}}
    no_file.write_text(as_elastic.security.create_api_key(name="findimage-test-nothing",
                                                          role_descriptors=nothing)["encoded"])
    capsys.readouterr()

    def store_line() -> tuple[int, str, str]:
        code = main(["doctor", "--json"])  # Slack is not configured here: only the store's line is looked at
        store = next(c for c in json.loads(capsys.readouterr().out) if c["check"] == "store")
        return code, store["status"], store["detail"]

    code, status, detail = store_line()
    assert status == "warn" and "ELASTICSEARCH_USERNAME may run the bot and the indexer; run `findimage index`" \
        in detail, "the index is not made yet"
    assert detail.startswith("Elasticsearch 8.") and "(license trial, active), index " in detail
    _use_key(monkeypatch, bot_file)
    _, _, detail = store_line()
    assert "ELASTICSEARCH_API_KEY may run the bot, not the indexer (it needs cluster:monitor/main, " in detail
    assert "(version and license not readable with these credentials)" in detail
    _use_key(monkeypatch, indexer_file)
    _, _, detail = store_line()
    assert "ELASTICSEARCH_API_KEY may run the indexer, not the bot (it needs monitor_ml, " in detail
    _use_key(monkeypatch, no_file)
    code, status, detail = store_line()
    assert (code, status) == (EXIT_USAGE, "fail")
    assert "ELASTICSEARCH_API_KEY may run neither the bot nor the indexer (the bot needs monitor_ml, " in detail
    assert detail.endswith("make their keys with `findimage keys create` and set ELASTICSEARCH_API_KEY.")


def test_the_backup_key_snapshots_findimage_indices_and_may_neither_read_them_nor_restore(
        as_elastic, settings, archive, tmp_path, monkeypatch, capsys):
    url, alias = SecureServer.url, settings.index_name
    files = {role: tmp_path / f"{role}.key" for role in ("bot", "indexer", "backup")}
    assert main(["keys", "create", *(arg for role, path in files.items()
                                     for arg in (f"--{role}-key-file", str(path)))]) == EXIT_OK
    repository = f"findimage-test-{uuid.uuid4().hex[:8]}"  # registered by the cluster's admin
    as_elastic.snapshot.create_repository(name=repository,
                                          repository={"type": "fs", "settings": {"location": repository}})
    monkeypatch.setenv("FINDIMAGE_ES_SNAPSHOT_REPOSITORY", repository)
    _use_key(monkeypatch, files["indexer"])
    assert main(["index"]) == EXIT_OK
    assert main(["backup", "by-the-indexer"]) == EXIT_REFUSED, "the indexer's key makes no snapshots"
    assert capsys.readouterr().err.endswith(
        f"findimage: Elasticsearch at {url} does not allow these credentials to make snapshots: use the backup key "
        "`findimage keys create` makes, or the elastic user.\n")
    try:
        _use_key(monkeypatch, files["backup"])
        assert main(["backup", "nightly"]) == EXIT_OK
        assert capsys.readouterr().out.startswith(f"nightly: snapshot in the repository {repository} of {alias} "
                                                  f"({alias}-v1, 7 documents)")
        backup_key = files["backup"].read_text().strip()
        with pytest.raises(AuthorizationException):
            Elasticsearch(url, api_key=backup_key).search(index=alias)
        assert main(["restore", "nightly", "--force"]) == EXIT_REFUSED
        assert capsys.readouterr().err == (
            f"findimage: Elasticsearch at {url} does not allow these credentials to restore snapshots (the `manage` "
            "cluster privilege, which Elasticsearch has in no narrower form): restore as the elastic user "
            "(ELASTICSEARCH_USERNAME=elastic and its ELASTICSEARCH_PASSWORD).\n")

        monkeypatch.delenv("ELASTICSEARCH_API_KEY_FILE")
        monkeypatch.setenv("ELASTICSEARCH_USERNAME", "elastic")
        monkeypatch.setenv("ELASTICSEARCH_PASSWORD", SecureServer.password)
        assert main(["restore", "nightly", "--force"]) == EXIT_OK
        assert f"{alias} -> {alias}-v2 (7 documents)" in capsys.readouterr().out
    finally:
        for snapshot in as_elastic.snapshot.get(repository=repository, snapshot="_all")["snapshots"]:
            as_elastic.snapshot.delete(repository=repository, snapshot=snapshot["snapshot"])
        as_elastic.snapshot.delete_repository(name=repository)

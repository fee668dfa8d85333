"""`findimage backup` and `restore` on Elasticsearch: a snapshot of the archive's index, the remembered
images and the channels in the repository FINDIMAGE_ES_SNAPSHOT_REPOSITORY names (an `fs` repository under
the test server's `path.repo`), restored behind the aliases as new generations; every answer as before."""
from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from es_support import client, es_only

from findimage import __version__
from findimage.backends import open_remembered
from findimage.models.clip import model_fingerprint
from findimage.records import ImageDoc, Posted, posted_path
from findimage.stores.base import ChannelState
from findimage.stores.elasticsearch.index import SCHEMA_VERSION
from findimage_cli import EXIT_OK, EXIT_REFUSED, main
from indexer.run import index_once

pytestmark = [es_only, pytest.mark.timeout(300)]
CHANNEL = "C0DESIGN"


@pytest.fixture
def repository(settings, monkeypatch):
    """An `fs` snapshot repository of this test's own (its location relative to the server's path.repo)."""
    name = f"findimage-test-{uuid.uuid4().hex[:8]}"
    es = client(settings.elasticsearch_url)
    es.snapshot.create_repository(name=name, repository={"type": "fs", "settings": {"location": name}})
    monkeypatch.setenv("FINDIMAGE_ES_SNAPSHOT_REPOSITORY", name)
    yield name
    for snapshot in es.snapshot.get(repository=name, snapshot="_all")["snapshots"]:
        es.snapshot.delete(repository=name, snapshot=snapshot["snapshot"])
    es.snapshot.delete_repository(name=name)
    es.close()


@pytest.fixture
def kept(settings, archive):
    """The archive indexed, and a photo remembered in #design."""
    assert index_once(settings, progress=False).added == 7
    remembered = open_remembered(settings)
    remembered.registry.save_channel(ChannelState(CHANNEL, "U0ANNA", time.time(), 0.0))
    posted = Posted(CHANNEL, "F0BOARD", "1772704800.000100", "U0ANNA", "https://x.slack.com/files/F0BOARD",
                    "whiteboard sprint.png")
    vector = np.random.default_rng(5).standard_normal(512).astype(np.float32)
    doc = ImageDoc(posted.image_id, posted.title, posted_path(CHANNEL, "F0BOARD", posted.title),
                   vector / np.linalg.norm(vector), "sha-board", 10, 1.0, 64, 64, time.time(),
                   model_fingerprint(str(settings.image_model)), "2026-03-05T10:00:00", "slack")
    remembered.add([(doc, posted)], doc.model_id)
    remembered.close()
    return settings


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def answers(capsys) -> dict[str, str]:
    found = {}
    for name, argv in {"text": ["search", "a stage with lights", "-k", "7", "--json"],
                       "remembered": ["search", "whiteboard sprint", "--channel", CHANNEL, "--json"]}.items():
        code, out, err = run(capsys, *argv)
        assert code == EXIT_OK, err
        found[name] = out
    code, out, _ = run(capsys, "status")
    found["status"] = "\n".join(line for line in out.splitlines() if line.startswith(("documents:", "remembered:")))
    return found


def test_a_snapshot_restores_the_archive_and_the_remembered_channels_behind_their_aliases(kept, repository, capsys):
    alias, es = kept.index_name, client(kept.elasticsearch_url)
    before = answers(capsys)
    assert "F0BOARD" in before["remembered"] and "documents:    7" in before["status"]

    code, out, err = run(capsys, "backup")
    assert code == EXIT_OK, err
    name = out.split(":", 1)[0]
    assert name.startswith(f"{alias}-") and out.endswith(f"restore it with `findimage restore {name}`\n")
    snapshot = es.snapshot.get(repository=repository, snapshot=name)["snapshots"][0]
    assert sorted(snapshot["indices"]) == [f"{alias}-channels", f"{alias}-remembered-v1", f"{alias}-v1"]
    assert (snapshot["metadata"]["findimage"], snapshot["metadata"]["schema"]) == (__version__, SCHEMA_VERSION)

    # Over the live indices only with --force.
    code, out, err = run(capsys, "restore", name)
    assert code == EXIT_REFUSED and out == ""
    assert err == (f"findimage: Elasticsearch already holds documents ({alias} 7, {alias}-remembered 1, "
                   f"{alias}-channels 2): add --force to replace them (the index of {alias} is kept as the rollback "
                   "copy; the remembered channels' indices are deleted).\n")

    # What a lost cluster leaves: nothing of findimage's.
    es.indices.delete(index=[f"{alias}-v1", f"{alias}-remembered-v1", f"{alias}-channels"])
    code, out, err = run(capsys, "restore", name)

    assert code == EXIT_OK, err
    assert out.startswith(f"restored the snapshot {name} (made ")
    assert (f"{alias} -> {alias}-v1 (7 documents), {alias}-remembered -> {alias}-remembered-v1 (1 documents), "
            f"{alias}-channels -> {alias}-channels-v1 (2 documents)") in out
    assert answers(capsys) == before
    assert set(es.indices.get_alias(name=f"{alias}-channels")) == {f"{alias}-channels-v1"}

    # Restored again, with --force: the restored archive index stays as the rollback copy.
    code, out, err = run(capsys, "restore", name, "--force")
    assert code == EXIT_OK, err
    assert f"kept {alias}-v1 as the rollback copy" in out
    assert set(es.indices.get_alias(name=alias)) == {f"{alias}-v2"}
    assert set(es.indices.get(index=f"{alias}-*")) == {f"{alias}-v1", f"{alias}-v2", f"{alias}-remembered-v2",
                                                       f"{alias}-channels-v2", f"{alias}-lease"}
    assert answers(capsys) == before
    # The channels' alias takes the bot's writes as its index did.
    remembered = open_remembered(kept)
    remembered.forget_channel(CHANNEL)
    remembered.close()
    es.indices.refresh(index=f"{alias}-channels")
    assert es.count(index=f"{alias}-channels")["count"] == 0
    code, out, _ = run(capsys, "search", "whiteboard sprint", "--channel", CHANNEL, "--json")
    assert "F0BOARD" not in out


def test_without_a_repository_backups_are_refused_in_one_sentence(kept, capsys, monkeypatch):
    url = kept.elasticsearch_url
    assert run(capsys, "backup")[1:] == ("", "findimage: Set FINDIMAGE_ES_SNAPSHOT_REPOSITORY to the snapshot "
                                             "repository registered in Elasticsearch that backups go to "
                                             "(docs/elasticsearch.md#backups).\n")
    monkeypatch.setenv("FINDIMAGE_ES_SNAPSHOT_REPOSITORY", "nowhere")
    code, out, err = run(capsys, "restore", "any")
    assert (code, out) == (EXIT_REFUSED, "")
    assert err == (f"findimage: Elasticsearch at {url} has no snapshot repository nowhere "
                   "(FINDIMAGE_ES_SNAPSHOT_REPOSITORY): register it first (PUT _snapshot/nowhere).\n")


def test_a_snapshot_of_a_newer_release_and_an_index_written_by_one_are_refused(kept, repository, capsys):
    alias, es = kept.index_name, client(kept.elasticsearch_url)
    es.snapshot.create(repository=repository, snapshot="newer", indices=f"{alias}-v1", wait_for_completion=True,
                       metadata={"findimage": "9.1.0", "schema": 99, "alias": alias,
                                 "indices": {"archive": f"{alias}-v1"}, "counts": {"archive": 7}})
    code, _, err = run(capsys, "restore", "newer", "--force")
    assert code == EXIT_REFUSED
    assert err == (f"findimage: The snapshot newer was written by findimage 9.1.0 (schema 99); this is findimage "
                   f"{__version__} (schema {SCHEMA_VERSION}): upgrade findimage, or restore a backup made by this "
                   "version.\n")

    meta = es.indices.get_mapping(index=f"{alias}-v1")[f"{alias}-v1"]["mappings"]["_meta"]
    es.indices.put_mapping(index=f"{alias}-v1", meta={**meta, "schema_version": 99, "findimage_version": "9.1.0"})
    for argv in (["search", "a stage"], ["index"]):
        code, _, err = run(capsys, *argv)
        assert code == EXIT_REFUSED, argv
        assert err == (f"findimage: The index {alias}-v1 was written by findimage 9.1.0 (schema 99); this is "
                       f"findimage {__version__} (schema {SCHEMA_VERSION}): upgrade findimage, or restore a backup "
                       "made by this version.\n"), argv

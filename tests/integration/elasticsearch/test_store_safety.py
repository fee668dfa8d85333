"""Elasticsearch data safety: readers never create an index, `--full` keeps the index it replaced as a
rollback copy, and no credential of ELASTICSEARCH_URL appears in any output."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from es_support import ES_URL, client, dead_url, es_only

from findimage.backends import open_store
from findimage.config import load_settings
from findimage.errors import IndexMissing, StoreError
from findimage.search import Searcher
from findimage_cli import EXIT_UNAVAILABLE, main
from indexer.run import index_once


def _nothing_exists(alias: str) -> bool:
    with client() as es:
        return (not es.indices.exists_alias(name=alias) and not es.indices.exists(index=alias)
                and not es.indices.get(index=f"{alias}*", allow_no_indices=True, expand_wildcards="all"))


# ---- only the indexer creates the index ------------------------------------------------------------
@es_only
def test_readers_of_a_missing_index_create_nothing(settings, capsys):
    alias = settings.index_name
    store = open_store(settings)
    assert store.count() == 0 and store.get_meta("image_model_id") is None and store.file_states() == {}
    assert store.get("nope") is None and store.vectors_by_sha256(["x"], "m") == {}
    with pytest.raises(IndexMissing) as caught:
        Searcher(settings, store=store).by_text("a snowy mountain")
    assert str(caught.value) == (f"The Elasticsearch index {alias} does not exist yet: run `findimage index` "
                                 "(or check FINDIMAGE_INDEX).")

    assert main(["search", "a snowy mountain"]) == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    assert out == "" and err == f"findimage: {caught.value}\n"

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"index:        {alias} (not created yet: run `findimage index`)" in out
    assert "documents:    0" in out
    assert _nothing_exists(alias), "search, status and count left no index or alias behind"


@es_only
def test_the_indexer_creates_the_index_even_for_an_empty_archive(settings):
    assert index_once(settings).added == 0
    with client() as es:
        assert list(es.indices.get_alias(name=settings.index_name)) == [f"{settings.index_name}-v1"]


# ---- --full keeps the previous index ---------------------------------------------------------------
@es_only
def test_full_keeps_the_replaced_index_until_the_next_full(settings, archive, capsys):
    alias = settings.index_name
    es = client()
    assert index_once(settings).added == 7
    assert index_once(settings, full=True).updated == 7
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v2"]
    assert es.count(index=f"{alias}-v1")["count"] == 7, "v1 is kept, with its documents, unaliased"
    assert not es.indices.get_alias(index=f"{alias}-v1")[f"{alias}-v1"]["aliases"]

    assert main(["status"]) == 0
    status = capsys.readouterr().out
    rollback = (f'POST _aliases {{"actions":[{{"add":{{"index":"{alias}-v1","alias":"{alias}"}}}},'
                f'{{"remove":{{"index":"{alias}-v2","alias":"{alias}"}}}}]}}')
    assert (f"previous:     {alias}-v1 (kept by the last `findimage index --full` or `restore`; roll back with "
            f"{rollback})" in status.splitlines())
    assert "rebuilding" not in status

    # The printed rollback works as it is: searches answer from v1 again.
    body = json.loads(rollback.split(" ", 2)[2])
    es.indices.update_aliases(actions=body["actions"])
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v1"]
    assert len(Searcher(settings).by_text("a photo", k=10).matches) == 7
    es.indices.update_aliases(actions=[{"add": {"index": f"{alias}-v2", "alias": alias}},
                                       {"remove": {"index": f"{alias}-v1", "alias": alias}}])

    assert index_once(settings, full=True).updated == 7
    assert set(es.indices.get(index=f"{alias}-v*")) == {f"{alias}-v2", f"{alias}-v3"}, \
        "the second --full deletes v1 and keeps v2"
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v3"]
    assert es.count(index=f"{alias}-v2")["count"] == 7
    es.close()


@es_only
def test_a_writer_is_sent_only_into_the_live_index_or_the_rebuild_in_progress(settings, archive):
    """A worker writes where its bucket says, and anyone who can write to the queue can write a bucket: the
    rollback copy, or an index a rollback left behind, is refused."""
    alias = settings.index_name
    index_once(settings)
    index_once(settings, full=True)  # v2 live, v1 the rollback copy
    planner, worker = open_store(settings, writer=True), open_store(settings, writer=True)
    es = client()
    try:
        for target in (f"{alias}-v1", f"{alias}-v3", "another-index", f"{alias}-seen"):
            with pytest.raises(StoreError, match=f"'{target}' is neither the live index of {alias} nor its rebuild"):
                worker.write_into(target)
        for target in (None, f"{alias}-v2"):
            worker.write_into(target)
            assert worker.rebuild_target() is None, "writes go to the live index"

        planner.begin_rebuild()
        worker.write_into(planner.rebuild_target())
        assert worker.rebuild_target() == f"{alias}-v3"
        worker.write_into(None)
        planner.finish_rebuild()

        # Rolled back to v2: v3 is newer and unaliased, like a rebuild, but none is running.
        es.indices.update_aliases(actions=[{"add": {"index": f"{alias}-v2", "alias": alias}},
                                           {"remove": {"index": f"{alias}-v3", "alias": alias}}])
        with pytest.raises(StoreError, match="neither the live index"):
            worker.write_into(f"{alias}-v3")
    finally:
        planner.close()
        worker.close()
        es.close()


# ---- no credential in any output ---------------------------------------------------------------------
SECRET = "s3cret-pw"


def _cli(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findimage_cli", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.parametrize("argv", [["status"], ["search", "a snowy mountain"], ["index"], ["-v", "status"],
                                  ["-v", "search", "a snowy mountain"], ["-v", "index"]])
def test_a_url_with_a_password_never_shows_it_when_elasticsearch_is_down(env, archive, argv):
    dead = dead_url()
    run = _cli({**env, "ELASTICSEARCH_URL": dead.replace("://", f"://elastic:{SECRET}@")}, *argv)
    assert run.returncode == EXIT_UNAVAILABLE, run.stderr
    assert SECRET not in run.stdout + run.stderr and "elastic:" not in run.stdout + run.stderr
    assert f"Elasticsearch at {dead} is not reachable" in run.stderr


@es_only
def test_a_live_url_with_userinfo_works_and_status_hides_the_password(env, archive):
    # The test server runs without security and accepts any basic auth: the URL's userinfo is sent.
    live = {**env, "ELASTICSEARCH_URL": ES_URL.replace("://", f"://elastic:{SECRET}@")}
    runs = [_cli(live, *argv) for argv in (["-v", "index"], ["-v", "status"], ["-v", "search", "a photo"])]
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    assert all(SECRET not in run.stdout + run.stderr for run in runs)
    assert f"store:        elasticsearch ({ES_URL}, index {env['FINDIMAGE_INDEX']})" in runs[1].stdout
    assert "documents:    7" in runs[1].stdout


def test_settings_repr_shows_no_secret():
    settings = load_settings({"ELASTICSEARCH_URL": f"https://elastic:{SECRET}@es.example.com:9200/prefix",
                              "ELASTICSEARCH_API_KEY": "a2V5LWlkOmtleS1zZWNyZXQ=", "ELASTICSEARCH_USERNAME": "u",
                              "ELASTICSEARCH_PASSWORD": "pw-secret", "SLACK_BOT_TOKEN": "xoxb-secret"}, env_file=None)
    shown = repr(settings) + str(settings)
    assert "elasticsearch_url='https://es.example.com:9200/prefix'" in shown
    for secret in (SECRET, "a2V5LWlkOmtleS1zZWNyZXQ=", "pw-secret", "xoxb-secret"):
        assert secret not in shown
    assert settings.elasticsearch_url == f"https://elastic:{SECRET}@es.example.com:9200/prefix", "still usable"

"""`findimage index --full` on Elasticsearch: a new index is built beside the live one and the alias
swaps to it in one step, so searches keep answering, with every document, throughout; the index it
replaced stays as a rollback copy until the next rebuild."""
from __future__ import annotations

import os
import subprocess
import sys

from es_support import client, es_only
from photos import save_photo

from findimage.backends import open_store
from findimage.search import Searcher
from indexer.run import index_once


@es_only
def test_full_rebuild_swaps_the_alias_while_searches_keep_answering(settings, env, archive):
    for i in range(40):
        save_photo(archive / "bulk" / f"{i:04d}.jpg", seed=3000 + i, size=(320, 240))
    assert index_once(settings).added == 47
    es, alias = client(settings.elasticsearch_url), settings.index_name
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v1"]

    searcher = Searcher(settings)
    proc = subprocess.Popen([sys.executable, "-m", "findimage_cli", "index", "--full"],
                            env={**os.environ, **env, "FINDIMAGE_BATCH_SIZE": "4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []  # (matches, indices behind the alias, whether the new index exists yet)
    while proc.poll() is None:
        matches = searcher.by_text("a photo", k=100).matches  # any error fails the test right here
        seen.append((len(matches), tuple(es.indices.get_alias(name=alias)),
                     bool(es.indices.exists(index=f"{alias}-v2"))))
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith("added 0, updated 47, moved 0, removed 0, unchanged 0, failed 0")

    assert all(n == 47 for n, _, _ in seen), "every search during the rebuild saw the whole archive"
    assert any(indices == (f"{alias}-v1",) and building for _, indices, building in seen), \
        "some searches ran on the old index while the new one was being written"
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v2"]
    assert es.count(index=f"{alias}-v1")["count"] == 47, "the old index is kept, whole, as the rollback copy"
    store = open_store(settings)
    assert store.count() == 47 and len(store.file_states()) == 47
    assert len(searcher.by_text("a photo", k=100).matches) == 47
    assert index_once(settings).unchanged == 47, "metadata (models, last pass) moved to the new index"


@es_only
def test_an_interrupted_rebuild_leaves_the_live_index_alone_and_is_cleaned_up(settings, archive):
    index_once(settings)
    store = open_store(settings)
    store.begin_rebuild()  # a rebuild that dies here (kill -9) leaves <alias>-v2 behind, not aliased
    store.upsert([store.get(next(iter(store.file_states().values())).image_id)])
    es, alias = client(settings.elasticsearch_url), settings.index_name
    assert set(es.indices.get(index=f"{alias}-v*")) == {f"{alias}-v1", f"{alias}-v2"}
    assert open_store(settings).count() == 7, "searches still see the live index only"
    assert any(label == "rebuilding" for label, _ in open_store(settings).details())

    summary = index_once(settings, full=True)
    assert summary.updated == 7
    assert set(es.indices.get(index=f"{alias}-v*")) == {f"{alias}-v1", f"{alias}-v3"}, \
        "the leftover v2 was deleted; v1, live before the rebuild, is kept"
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-v3"]
    assert open_store(settings).count() == 7


@es_only
def test_status_shows_the_server_and_the_index_behind_the_alias(settings, archive, capsys):
    from findimage_cli import main

    index_once(settings)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    alias = settings.index_name
    assert f"store:        elasticsearch ({settings.elasticsearch_url}, index {alias})" in out
    assert "server:       Elasticsearch 8." in out
    assert (f"index:        {alias} -> {alias}-v1 (512 dims, int8_hnsw; 1 shard(s), replicas 0-1 (now 0), green)"
            in out), "one node: the auto-expanding replica range holds no copy, so the index is green"
    assert "documents:    7" in out and "last pass:" in out and "added 7" in out

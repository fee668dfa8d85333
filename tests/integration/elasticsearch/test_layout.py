"""Production index settings on the real server: shards and replicas from configuration on every index a
pass or a rebuild creates, a rebuild filled without replicas or refreshes and given the configured ones
back before the alias moves to it, and `findimage status` showing them with the health."""
from __future__ import annotations

import dataclasses

import pytest
from es_support import client, es_only

from findimage.backends import open_store
from findimage.config import ConfigError, load_settings
from findimage_cli import main
from indexer.run import index_once


def index_settings(url: str, index: str) -> dict:
    with client(url) as es:
        return es.indices.get_settings(index=index)[index]["settings"]["index"]


@es_only
def test_every_index_gets_the_configured_layout_and_a_rebuild_fills_fast_then_restores_it(settings, archive):
    index_once(settings)
    first = f"{settings.index_name}-v1"
    made = index_settings(settings.elasticsearch_url, first)
    assert (made["number_of_shards"], made["auto_expand_replicas"]) == ("1", "0-1")
    assert "refresh_interval" not in made

    store = open_store(settings, writer=True)
    store.begin_rebuild()
    building = index_settings(settings.elasticsearch_url, store.indices.write_index)
    assert (building["number_of_replicas"], building["auto_expand_replicas"], building["refresh_interval"]) == (
        "0", "false", "-1"), "filled without replicas or refreshes"
    rebuilt = store.indices.write_index
    store.finish_rebuild()
    restored = index_settings(settings.elasticsearch_url, rebuilt)
    assert restored["auto_expand_replicas"] == "0-1" and "refresh_interval" not in restored
    with client(settings.elasticsearch_url) as es:
        assert list(es.indices.get_alias(name=settings.index_name)) == [rebuilt]


@es_only
def test_a_fixed_number_of_replicas_and_shards(settings, archive, capsys, monkeypatch):
    two = dataclasses.replace(settings, es_shards=2, es_replicas="0")
    index_once(two)
    made = index_settings(settings.elasticsearch_url, f"{settings.index_name}-v1")
    assert (made["number_of_shards"], made["number_of_replicas"], made["auto_expand_replicas"]) == ("2", "0", "false")

    for key, value in {"ELASTICSEARCH_URL": settings.elasticsearch_url, "FINDIMAGE_INDEX": settings.index_name}.items():
        monkeypatch.setenv(key, value)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert (f"{settings.index_name} -> {settings.index_name}-v1 "
            "(512 dims, int8_hnsw; 2 shard(s), replicas 0, green)") in out


@pytest.mark.parametrize("value", ["two", "1-", "-1", "0-many"])
def test_a_replica_setting_that_is_neither_a_number_nor_a_range_is_refused(value):
    with pytest.raises(ConfigError, match=f"FINDIMAGE_ES_REPLICAS='{value}' must be a number of replicas"):
        load_settings({"FINDIMAGE_ES_REPLICAS": value}, env_file=None)


def vector_index_options(url: str, index: str) -> dict:
    with client(url) as es:
        return es.indices.get_mapping(index=index)[index]["mappings"]["properties"]["image_embedding"]["index_options"]


@es_only
def test_new_indices_get_the_configured_hnsw_graph(settings, archive):
    index_once(dataclasses.replace(settings, es_hnsw_m=24, es_hnsw_ef_construction=150))
    assert vector_index_options(settings.elasticsearch_url, f"{settings.index_name}-v1") == {
        "type": "int8_hnsw", "m": 24, "ef_construction": 150}

    index_once(settings, full=True)  # the defaults, as a rebuild applies them
    assert vector_index_options(settings.elasticsearch_url, f"{settings.index_name}-v2") == {
        "type": "int8_hnsw", "m": settings.es_hnsw_m, "ef_construction": settings.es_hnsw_ef_construction}


def segment_count(url: str, index: str) -> int:
    with client(url) as es:
        shards = es.indices.segments(index=index)["indices"][index]["shards"].values()
        return sum(len(copy["segments"]) for copies in shards for copy in copies)


def rebuild_in_segments(settings, batches: int) -> str:
    """A rebuild whose index holds `batches` segments when its writes are done; the index's name."""
    index_once(settings)
    store = open_store(settings, writer=True)
    docs = [store.get(state.image_id) for state in store.file_states().values()]
    store.begin_rebuild()
    rebuilt = store.indices.write_index
    with client(settings.elasticsearch_url) as es:
        for i in range(batches):
            store.upsert(docs[i::batches])
            es.indices.flush(index=rebuilt)  # each batch its own segment, as a large bulk load leaves many
    assert segment_count(settings.elasticsearch_url, rebuilt) == batches
    store.finish_rebuild()
    with client(settings.elasticsearch_url) as es:
        assert list(es.indices.get_alias(name=settings.index_name)) == [rebuilt]
    return rebuilt


@es_only
def test_with_force_merge_on_a_rebuild_is_merged_into_one_segment_before_the_alias_moves(settings, archive):
    merged = rebuild_in_segments(dataclasses.replace(settings, es_force_merge_minutes=30), 3)
    assert segment_count(settings.elasticsearch_url, merged) == 1


@es_only
def test_by_default_a_rebuild_keeps_its_segments(settings, archive):
    assert settings.es_force_merge_minutes == 0, "off by default: one graph finds fewer text-like neighbours"
    rebuilt = rebuild_in_segments(settings, 3)
    assert segment_count(settings.elasticsearch_url, rebuilt) == 3

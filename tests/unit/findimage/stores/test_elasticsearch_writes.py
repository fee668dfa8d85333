"""What the Elasticsearch store sends, without a server: vectors as short JSON numbers that give the same
float32 back, and a rebuild's force-merge that never keeps the alias from moving."""
from __future__ import annotations

import json
import logging
from unittest import mock

import numpy as np
import pytest
from elasticsearch import ApiError, ConnectionTimeout

from findimage.config import ElasticsearchSettings
from findimage.stores.elasticsearch.index import IndexLayout
from findimage.stores.elasticsearch.store import _vector_json


def test_vectors_travel_as_short_numbers_that_give_the_same_float32_back():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sent = [json.dumps(_vector_json(v)) for v in vectors]
    back = np.array([json.loads(s) for s in sent], dtype=np.float32)
    assert np.abs(back - vectors).max() <= 1e-9
    assert (back == vectors).mean() > 0.85, "all but the smallest components come back bit for bit"
    assert np.mean([len(s) for s in sent]) < 0.65 * np.mean([len(json.dumps(v.astype(float).tolist()))
                                                              for v in vectors])


def layout(forcemerge: mock.Mock, minutes: float = 30.0) -> tuple[IndexLayout, mock.MagicMock]:
    client = mock.MagicMock()
    client.indices.get_alias.return_value = {"photos-v1": {}}
    client.options.return_value.indices.forcemerge = forcemerge
    indices = IndexLayout(client, ElasticsearchSettings(elasticsearch_url="http://es:9200",
                                                        es_force_merge_minutes=minutes), "photos", 512)
    indices.write_index = "photos-v2"
    return indices, client


def moved_to(client: mock.MagicMock) -> list:
    [call] = client.indices.update_aliases.call_args_list
    return [a for a in call.kwargs["actions"] if "add" in a]


def test_a_rebuild_is_force_merged_once_with_the_bound_as_its_timeout_before_the_swap():
    indices, client = layout(mock.Mock(), minutes=2)
    indices.finish_rebuild()
    client.options.assert_called_once_with(request_timeout=120, max_retries=0, retry_on_timeout=False)
    client.options.return_value.indices.forcemerge.assert_called_once_with(index="photos-v2", max_num_segments=1)
    assert moved_to(client) == [{"add": {"index": "photos-v2", "alias": "photos"}}]


@pytest.mark.parametrize("failure", [
    ConnectionTimeout("read timed out"),
    ApiError("no", meta=mock.Mock(status=500), body={}),
], ids=["still merging after the bound", "refused"])
def test_the_alias_moves_all_the_same_when_the_merge_outlasts_its_bound_or_fails(failure, caplog):
    indices, client = layout(mock.Mock(side_effect=failure))
    with caplog.at_level(logging.WARNING, logger="findimage.stores.elasticsearch.index"):
        indices.finish_rebuild()
    assert moved_to(client) == [{"add": {"index": "photos-v2", "alias": "photos"}}]
    assert "force-merge of photos-v2" in caplog.text


def test_no_merge_when_it_is_turned_off():
    indices, client = layout(mock.Mock(), minutes=0)
    indices.finish_rebuild()
    client.options.return_value.indices.forcemerge.assert_not_called()
    assert moved_to(client)

"""The remembered channels and their postings in one Elasticsearch index, `<alias>-channels`, shared by
every bot replica (findimage.remembered).

Two kinds of documents: a channel's state (id `channel:<C>`) and a posting (id = the image id, with
its channel and file id as keywords). Every write waits for the refresh, so a replica reading right
after another one wrote (the channel turned off, a file deleted) sees it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError, helpers

from findimage.config import public_url
from findimage.records import Posted
from findimage.stores.base import ChannelState
from findimage.stores.elasticsearch.client import error_type, unavailable_on_connection_errors
from findimage.stores.elasticsearch.names import channels_index

_KEYWORD = {"type": "keyword"}
MAPPING = {"dynamic": "strict", "properties": {
    "kind": _KEYWORD, "channel": _KEYWORD, "file_id": _KEYWORD, "message_ts": _KEYWORD, "poster": _KEYWORD,
    "permalink": {"type": "keyword", "index": False}, "title": {"type": "keyword", "index": False},
    "state": {"type": "object", "enabled": False}}}
_POSTED_FIELDS = ("channel", "file_id", "message_ts", "poster", "permalink", "title")
PAGE = 1000


class ElasticsearchRegistry:
    def __init__(self, client: Elasticsearch, alias: str, url: str | None = None):
        self.client = client
        self.url = public_url(url)  # only ever shown
        self.index = channels_index(alias)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if self._ready:
                return
            try:
                self.client.indices.create(index=self.index, mappings=MAPPING,
                                           settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
            except BadRequestError as exc:
                if error_type(exc) != "resource_already_exists_exception":
                    raise
            self._ready = True

    @unavailable_on_connection_errors
    def channel(self, channel: str) -> ChannelState | None:
        try:  # reads create nothing: no index yet is no channel remembered yet
            found = self.client.get(index=self.index, id=f"channel:{channel}")
        except NotFoundError:
            return None
        return ChannelState.of_json(found["_source"]["state"])

    @unavailable_on_connection_errors
    def channels(self) -> list[ChannelState]:
        return [ChannelState.of_json(s["state"]) for s in self._all({"term": {"kind": "channel"}})]

    @unavailable_on_connection_errors
    def save_channel(self, state: ChannelState) -> None:
        self._ensure()
        self.client.index(index=self.index, id=f"channel:{state.channel}", refresh="wait_for",
                          document={"kind": "channel", "channel": state.channel, "state": state.as_json()})

    @unavailable_on_connection_errors
    def update_channel(self, state: ChannelState) -> bool:
        self._ensure()
        try:  # an update, not an index: it fails on a document `drop_channel` deleted
            self.client.update(index=self.index, id=f"channel:{state.channel}", doc={"state": state.as_json()},
                               refresh="wait_for")
        except NotFoundError:
            return False
        return True

    @unavailable_on_connection_errors
    def drop_channel(self, channel: str) -> None:
        self._ensure()
        self.client.delete_by_query(index=self.index, query={"term": {"channel": channel}}, conflicts="proceed",
                                    refresh=True, wait_for_completion=True)

    @unavailable_on_connection_errors
    def add_posted(self, posted: Sequence[Posted]) -> None:
        self._ensure()
        actions = ({"_index": self.index, "_id": p.image_id,
                    "_source": {"kind": "posted", **{f: getattr(p, f) for f in _POSTED_FIELDS}}} for p in posted)
        helpers.bulk(self.client, actions, refresh="wait_for")

    @unavailable_on_connection_errors
    def posted(self, image_ids: Iterable[str]) -> dict[str, Posted]:
        ids = list(image_ids)
        found: dict[str, Posted] = {}
        for start in range(0, len(ids), PAGE):
            try:
                docs = self.client.mget(index=self.index, ids=ids[start:start + PAGE])["docs"]
            except NotFoundError:
                return {}
            for doc in docs:
                source = doc.get("_source") or {}
                if doc.get("found") and source.get("kind") == "posted":
                    found[doc["_id"]] = _posted(source)
        return found

    @unavailable_on_connection_errors
    def posted_in(self, channel: str) -> list[Posted]:
        return [_posted(s) for s in self._all({"bool": {"filter": [{"term": {"kind": "posted"}},
                                                                     {"term": {"channel": channel}}]}})]

    @unavailable_on_connection_errors
    def posted_as(self, file_id: str) -> list[Posted]:
        return [_posted(s) for s in self._all({"bool": {"filter": [{"term": {"kind": "posted"}},
                                                                     {"term": {"file_id": file_id}}]}})]

    @unavailable_on_connection_errors
    def drop_posted(self, image_ids: Iterable[str]) -> None:
        self._ensure()
        actions = ({"_op_type": "delete", "_index": self.index, "_id": i} for i in image_ids)
        helpers.bulk(self.client, actions, refresh="wait_for", raise_on_error=False, ignore_status=(404,))

    def _all(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return [hit["_source"] for hit in helpers.scan(self.client, index=self.index, query={"query": query},
                                                             size=PAGE)]
        except NotFoundError:
            return []

    def close(self) -> None:
        pass  # the client belongs to whoever made it


def _posted(source: dict[str, Any]) -> Posted:
    return Posted(*(source.get(f, "") for f in _POSTED_FIELDS))

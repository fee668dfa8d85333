"""The remembered channels and their postings in one Elasticsearch index, `<alias>-channels`, shared by
every bot replica (findimage.remembered). Once a snapshot was restored (snapshots.py) `<alias>-channels` is
an alias over the restored `<alias>-channels-v<N>`: every request names it alike.

Four kinds of documents: a channel's state (id `channel:<C>`), a posting (id = the image id, with its
channel and file id as keywords), a journal entry (id `journal:<event id>`: an event kept until applied)
and a deleted file's record (id `gone:<F>`). Every write waits for the refresh, so a replica reading right
after another one wrote (the channel turned off, a file deleted) sees it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError, helpers

from findimage.config import public_url
from findimage.records import Posted
from findimage.stores.base import LIFECYCLE, REMEMBER, ChannelState, Pending
from findimage.stores.elasticsearch.client import error_type, unavailable_on_connection_errors
from findimage.stores.elasticsearch.names import channels_index

_KEYWORD = {"type": "keyword"}
MAPPING: dict[str, Any] = {"dynamic": "strict", "properties": {
    "kind": _KEYWORD, "channel": _KEYWORD, "file_id": _KEYWORD, "message_ts": _KEYWORD, "poster": _KEYWORD,
    "permalink": {"type": "keyword", "index": False}, "title": {"type": "keyword", "index": False},
    "state": {"type": "object", "enabled": False},
    # the journal of events not yet applied (kind "journal") and deleted files (kind "gone")
    "lane": _KEYWORD, "received": {"type": "double"}, "worker": _KEYWORD, "worker_until": {"type": "double"},
    "until": {"type": "double"}, "entry": {"type": "object", "enabled": False}}}
PRUNE_SECONDS = 3600.0  # how often lapsed records of deleted files are deleted
_POSTED_FIELDS = ("channel", "file_id", "message_ts", "poster", "permalink", "title")
PAGE = 1000


class ElasticsearchRegistry:
    def __init__(self, client: Elasticsearch, alias: str, url: str | None = None):
        self.client = client
        self.url = public_url(url)  # only ever shown
        self.index = channels_index(alias)
        self._ready = False
        self._lock = threading.Lock()
        self._pruned = 0.0

    def _ensure(self) -> None:
        with self._lock:
            if self._ready:
                return
            try:
                self.client.indices.create(index=self.index, mappings=MAPPING,
                                           settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
            except BadRequestError as exc:
                # There already, as an index or (after a restore: findimage.stores.elasticsearch.snapshots)
                # as an alias over one.
                if error_type(exc) not in ("resource_already_exists_exception", "invalid_index_name_exception") \
                        or not self.client.indices.exists(index=self.index):
                    raise
                # an index made by an earlier release: the fields added since (adding fields is allowed)
                self.client.indices.put_mapping(index=self.index, properties=MAPPING["properties"])
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
    def erase_all(self) -> None:
        if self.client.indices.exists(index=self.index):
            # delete_by_query sees what a refresh has made searchable: entries kept a moment ago too
            self.client.indices.refresh(index=self.index)
            self.client.delete_by_query(index=self.index, query={"match_all": {}}, conflicts="proceed",
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

    @unavailable_on_connection_errors
    def keep(self, entries: Sequence[Pending]) -> None:
        self._ensure()
        # create-only: Slack's re-delivery of an entry already kept (or being applied) changes nothing.
        # No refresh wait: the translog makes each write durable when it returns; `take` refreshes.
        actions = ({"_op_type": "create", "_index": self.index, "_id": f"journal:{e.id}",
                    "_source": {"kind": "journal", "lane": e.lane, "received": e.received, "worker": e.worker,
                                "worker_until": e.worker_until, "entry": e.as_json()}} for e in entries)
        _, errors = helpers.bulk(self.client, actions, raise_on_error=False)
        failed = [e for e in errors if (e.get("create") or {}).get("status") != 409] if isinstance(errors, list) \
            else []
        if failed:
            raise RuntimeError(f"{len(failed)} event(s) could not be kept: {failed[0]}")

    @unavailable_on_connection_errors
    def take(self, lane: str, limit: int, worker: str, now: float, hold_seconds: float) -> list[Pending]:
        self._ensure()
        try:
            self.client.indices.refresh(index=self.index)  # entries kept a moment ago, without waiting for them
        except NotFoundError:  # deleted under a running bot: nothing kept; made again by the next write
            self._ready = False
            return []
        free = {"bool": {"should": [{"range": {"worker_until": {"lte": now}}}, {"term": {"worker": worker}}]}}
        hits = self.client.search(index=self.index, size=limit, seq_no_primary_term=True, sort=[{"received": "asc"}],
                                  query={"bool": {"filter": [{"term": {"kind": "journal"}}, {"term": {"lane": lane}},
                                                             free]}})["hits"]["hits"]
        taken = []
        for hit in hits:
            entry = Pending.of_json(hit["_source"]["entry"])
            entry.attempts += 1
            entry.worker, entry.worker_until = worker, now + hold_seconds
            try:  # only if no other replica took it since the search (optimistic concurrency)
                self.client.update(index=self.index, id=hit["_id"], if_seq_no=hit["_seq_no"],
                                   if_primary_term=hit["_primary_term"],
                                   doc={"entry": entry.as_json(), "worker": worker,
                                        "worker_until": entry.worker_until})
            except (ConflictError, NotFoundError):
                continue
            taken.append(entry)
        return taken

    @unavailable_on_connection_errors
    def settle(self, ids: Iterable[str]) -> None:
        actions = ({"_op_type": "delete", "_index": self.index, "_id": f"journal:{i}"} for i in ids)
        helpers.bulk(self.client, actions, raise_on_error=False, ignore_status=(404,))

    @unavailable_on_connection_errors
    def backlog(self) -> dict[str, int]:
        try:  # what was kept or settled a moment ago counted too
            self.client.indices.refresh(index=self.index)
        except NotFoundError:
            return {}
        counts = {}
        for lane in (LIFECYCLE, REMEMBER):
            try:
                counts[lane] = self.client.count(index=self.index, query={"bool": {"filter": [
                    {"term": {"kind": "journal"}}, {"term": {"lane": lane}}]}})["count"]
            except NotFoundError:
                counts[lane] = 0
        return {lane: count for lane, count in counts.items() if count}

    @unavailable_on_connection_errors
    def mark_gone(self, file_ids: Iterable[str], now: float, keep_seconds: float) -> None:
        self._ensure()
        actions = ({"_index": self.index, "_id": f"gone:{f}",
                    "_source": {"kind": "gone", "file_id": f, "until": now + keep_seconds}} for f in file_ids)
        helpers.bulk(self.client, actions)
        if now - self._pruned > PRUNE_SECONDS:
            self._pruned = now
            self.client.delete_by_query(index=self.index, conflicts="proceed", wait_for_completion=False, query={
                "bool": {"filter": [{"term": {"kind": "gone"}}, {"range": {"until": {"lte": now}}}]}})

    @unavailable_on_connection_errors
    def gone(self, file_ids: Iterable[str], now: float) -> set[str]:
        ids = [f"gone:{f}" for f in file_ids]
        if not ids:
            return set()
        try:  # a get is real-time: a record written a moment ago is found without a refresh
            docs = self.client.mget(index=self.index, ids=ids)["docs"]
        except NotFoundError:
            return set()
        return {d["_source"]["file_id"] for d in docs if d.get("found") and d["_source"].get("until", 0) > now}

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

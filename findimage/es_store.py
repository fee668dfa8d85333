"""Elasticsearch kNN store: the blog post's dense_vector index behind an alias, written with helpers.bulk.

The alias (FINDIMAGE_INDEX, default `my-image-embeddings`) points at one concrete index,
`<alias>-v1` at first; a full rebuild writes `<alias>-v<N+1>` and swaps the alias atomically, so
searches keep working meanwhile, and keeps the index it replaced as a rollback copy until the next
rebuild. Only a store opened as writer (the indexer) creates indices: a reader of a missing alias
finds nothing (count 0) or is told to run the indexer (search).
"""
from __future__ import annotations

import json
import logging
import re
from typing import Iterable, Sequence

import numpy as np
from elasticsearch import ApiError, BadRequestError, Elasticsearch, NotFoundError, helpers

from .errors import BackendUnavailable, IndexMissing, StoreError
from .es_client import (
    BUSY_STATUSES,
    access_denied,
    error_type,
    index_dims,
    item_reason,
    make_client,
    public_url,
    unavailable_on_connection_errors,
)
from .es_query import MATCH_FIELDS, NEW_FIELDS, exact_top, filters, knn_body, matches, names_body
from .names import name_words
from .records import DIMS, FileState, ImageDoc, Match, normalise_folder

log = logging.getLogger(__name__)

STATE_FIELDS = ["image_id", "relative_path", "sha256", "size", "mtime", "model_id", "taken_source"]


def mapping(dims: int, index_options: str) -> dict:
    return {
        "dynamic": "strict",
        "properties": {
            "image_id": {"type": "keyword"},
            "image_name": {"type": "keyword"},
            "relative_path": {"type": "keyword"},
            "image_embedding": {"type": "dense_vector", "dims": dims, "index": True, "similarity": "cosine",
                                "index_options": {"type": index_options}},
            "sha256": {"type": "keyword"},
            "size": {"type": "long"},
            "mtime": {"type": "double"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "indexed_at": {"type": "double"},
            "model_id": {"type": "keyword"},
            **NEW_FIELDS,
        },
    }


BULK_THREADS = 2
# What the indexer does to its indices: checked when the store is opened for writing, so credentials
# that may only search fail at the start of a pass with one sentence instead of on the first write.
WRITER_PRIVILEGES = ["create_index", "write", "delete_index", "manage", "read", "view_index_metadata"]


class ElasticsearchStore:
    def __init__(self, client: Elasticsearch, url: str, alias: str = "my-image-embeddings",
                 index_options: str = "int8_hnsw", dims: int = DIMS, shards: int = 1, replicas: str = "0-1",
                 oversample: float = 1.0):
        self.client = client
        self.oversample = oversample  # kNN candidates per result, re-ranked by exact cosine (1: none)
        self.shards = shards
        self.replicas = replicas
        self.url = public_url(url)  # only ever shown: the client holds the credentials
        self.alias = alias
        self.index_options = index_options
        self.dims = dims
        self.description = f"elasticsearch ({self.url}, index {alias})"
        self._write_index: str | None = None  # the concrete index a rebuild writes into
        self._needs_refresh = False
        self._ready = False
        self._index_dims: int | None = None  # dims of the index behind the alias, once known
        # (concrete index, its _meta): read once per index, so a query costs one search request. A search
        # answered by another index (a rebuild swapped the alias) drops it; see knn.
        self._meta_cache: tuple[str, dict] | None = None

    @classmethod
    def from_settings(cls, settings, dims: int = DIMS, writer: bool = False, client=None) -> "ElasticsearchStore":
        store = cls(client or make_client(settings), settings.elasticsearch_url, settings.index_name,
                    settings.es_index_options, dims, settings.es_shards, settings.es_replicas,
                    settings.es_rescore_oversample)
        if writer:
            store.open_for_writing()
        return store

    # ---- index lifecycle ----------------------------------------------------------------------
    @unavailable_on_connection_errors
    def open_for_writing(self) -> None:
        """Fail now, in one sentence, unless these credentials may manage the alias's indices; create them."""
        names = [self.alias, f"{self.alias}-v*"]
        try:
            found = self.client.security.has_privileges(index=[{"names": names, "privileges": WRITER_PRIVILEGES}])
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise
            found = {"has_all_requested": True}  # security is off: everything is allowed
        if not found.get("has_all_requested"):
            missing = sorted({p for index in found.get("index", {}).values() for p, ok in index.items() if not ok})
            raise access_denied(self.url, what=f"write the index {self.alias} (no {', '.join(missing)})")
        self._ensure_index()

    def _missing(self) -> bool:
        return not self.client.indices.exists_alias(name=self.alias) and not self.client.indices.exists(
            index=self.alias)

    def _ensure_index(self) -> None:
        """Create the first concrete index (`<alias>-v1`) together with its alias on first use.

        Index and alias are made in one request under a fixed name, so processes starting at the same
        time end up sharing one index (the others get `resource_already_exists`) instead of each
        hanging the alias on an index of its own.
        """
        if self._ready:
            return
        if self._missing():
            first = f"{self.alias}-v1"
            try:
                self._create_concrete(first, alias=True)
            except BadRequestError as exc:
                if error_type(exc) != "resource_already_exists_exception":
                    raise
                if not self.client.indices.exists_alias(name=self.alias):  # v1 there, alias removed by hand
                    self.client.indices.put_alias(index=first, name=self.alias)
        else:
            # An index made by an earlier version: the mapping is strict, so the new fields must exist
            # before any document carries them (idempotent, and no reindex).
            for index in self._concrete_indices():
                known = self.client.indices.get_mapping(index=index)[index]["mappings"].get("properties", {})
                if any(name not in known for name in NEW_FIELDS):
                    self.client.indices.put_mapping(index=index, properties=NEW_FIELDS)
        self._ready = True

    def _replica_settings(self) -> dict:
        if "-" in self.replicas:  # e.g. "0-1": none on one node, a copy as soon as a second node joins
            return {"auto_expand_replicas": self.replicas}
        return {"auto_expand_replicas": "false", "number_of_replicas": int(self.replicas)}

    def _create_concrete(self, name: str, meta: dict | None = None, alias: bool = False,
                         building: bool = False) -> str:
        """A concrete index with the configured shards and replicas; one being rebuilt is filled first with
        no replicas and no refresh (the fastest bulk indexing), and gets the configured ones before the swap."""
        mappings = mapping(self.dims, self.index_options)
        if meta:
            mappings["_meta"] = meta
        settings = {"number_of_shards": self.shards, **self._replica_settings()}
        if building:
            settings.update({"auto_expand_replicas": "false", "number_of_replicas": 0, "refresh_interval": "-1"})
        self.client.indices.create(index=name, mappings=mappings, aliases={self.alias: {}} if alias else None,
                                   settings=settings)
        return name

    def _concrete_indices(self) -> list[str]:
        try:
            return list(self.client.indices.get_alias(name=self.alias))
        except NotFoundError:
            return [self.alias] if self.client.indices.exists(index=self.alias) else []

    def _versions(self) -> dict[str, int]:
        """Every `<alias>-v<N>` index, with its N."""
        pattern = re.compile(rf"{re.escape(self.alias)}-v(\d+)")
        found = self.client.indices.get(index=f"{self.alias}-v*", expand_wildcards="open,closed",
                                        allow_no_indices=True, ignore_unavailable=True)
        return {name: int(m.group(1)) for name in found if (m := pattern.fullmatch(name))}

    def _orphans(self) -> list[str]:
        """Concrete indices of this alias it does not point at: the copy kept by the last rebuild, one
        left by an interrupted rebuild, or one rolled back from."""
        live = set(self._concrete_indices()) | {self._write_index}
        return sorted(i for i in self._versions() if i not in live)

    def _kept_and_stray(self) -> tuple[list[str], list[str]]:
        """Unaliased indices split into older generations than the live one (rollback copies) and newer."""
        versions, live = self._versions(), self._concrete_indices()
        newest_live = max((versions.get(i, 0) for i in live), default=0)
        orphans = self._orphans()
        return ([i for i in orphans if versions[i] < newest_live],
                [i for i in orphans if versions[i] >= newest_live])

    def rollback_command(self, previous: str, live: list[str]) -> str:
        actions = [{"add": {"index": previous, "alias": self.alias}},
                   *({"remove": {"index": i, "alias": self.alias}} for i in live if i != self.alias)]
        return f"POST _aliases {json.dumps({'actions': actions}, separators=(',', ':'))}"

    @unavailable_on_connection_errors
    def begin_rebuild(self) -> None:
        """A new concrete index receives the following writes; the alias keeps serving the old one.

        Indices the alias did not point at when this rebuild began go now: the copy the previous rebuild
        kept (this rebuild keeps the live index instead) and any left by an interrupted rebuild.
        """
        self._ensure_index()
        # Never reuse a name: a stray writer of an interrupted rebuild must not land in the new index.
        version = max(self._versions().values(), default=0) + 1
        kept, stray = self._kept_and_stray()
        for index in kept + stray:
            log.info("deleting %s (%s)", index, "the previous rollback copy" if index in kept
                     else "left by an interrupted or rolled-back rebuild")
            self.client.indices.delete(index=index, ignore_unavailable=True)
        current = self._concrete_indices()
        self._write_index = self._create_concrete(f"{self.alias}-v{version}",
                                                  self._read_meta(current[0]) if current else None, building=True)

    @unavailable_on_connection_errors
    def finish_rebuild(self) -> None:
        """Swap the alias to the rebuilt index in one atomic step; the old index stays, unaliased, as the
        rollback copy (`findimage status` shows the command) until the next rebuild begins."""
        new, old = self._write_index, self._concrete_indices()
        if new is None:
            return
        self._meta_cache = None
        # The configured replicas and refresh back before searches see the index; then wait until every
        # primary (and, where the cluster has the nodes, every copy) is assigned.
        self.client.indices.put_settings(index=new, settings={**self._replica_settings(), "refresh_interval": None})
        self.client.indices.refresh(index=new)
        self.client.cluster.health(index=new, wait_for_status="yellow", timeout="60s")
        actions = [{"remove": {"index": i, "alias": self.alias}} for i in old if i != self.alias]
        if self.alias in old:  # a plain index under the alias name (made outside findimage): replace it
            actions.append({"remove_index": {"index": self.alias}})
        self.client.indices.update_aliases(actions=[*actions, {"add": {"index": new, "alias": self.alias}}])
        self._write_index = None
        self._index_dims = None
        for index in old:
            if index != self.alias:
                log.info("kept %s as the rollback copy: %s", index, self.rollback_command(index, [new]))

    @unavailable_on_connection_errors
    def drop(self) -> None:
        """Delete the alias's indices, including any left by an interrupted rebuild (tests, uninstall)."""
        doomed = self._concrete_indices() + self._orphans() + ([self._write_index] if self._write_index else [])
        for index in dict.fromkeys(doomed):
            self.client.indices.delete(index=index, ignore_unavailable=True)
        self._write_index = None
        self._ready = False

    @unavailable_on_connection_errors
    def index_dims(self) -> int | None:
        """Dims of the vectors in the index behind the alias; None while there is no index."""
        if self._index_dims is None:
            self._index_dims = index_dims(self.client, self.alias)
        return self._index_dims

    @unavailable_on_connection_errors
    def details(self) -> list[tuple[str, str]]:
        """(label, value) lines for `findimage status`: server, alias -> index, rebuild leftovers."""
        info, health = self.client.info(), self.client.cluster.health()
        lines = [("server", f"Elasticsearch {info['version']['number']}, cluster {info['cluster_name']} "
                            f"({health['status']})")]
        concrete = self._concrete_indices()
        if not concrete:
            lines.append(("index", f"{self.alias} (not created yet: run `findimage index`)"))
        for index in concrete:
            field = self.client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["image_embedding"]
            options = field.get("index_options", {}).get("type", "flat")
            lines.append(("index", f"{self.alias} -> {index} ({field['dims']} dims, {options}; "
                                   f"{self._layout(index)})"))
        kept, stray = self._kept_and_stray()
        for index in kept:
            lines.append(("previous", f"{index} (kept by the last `findimage index --full`; roll back with "
                                      f"{self.rollback_command(index, concrete)})"))
        for index in stray:
            lines.append(("rebuilding", f"{index} (a `findimage index --full` is running, was interrupted or "
                                        "was rolled back; the next one deletes it)"))
        return lines

    def _layout(self, index: str) -> str:
        """Shards, replicas (as configured and as assigned now) and the index's health."""
        found = self.client.indices.get_settings(index=index)[index]["settings"]["index"]
        expand = found.get("auto_expand_replicas", "false")
        replicas = f"replicas {expand} (now {found.get('number_of_replicas')})" if expand != "false" else \
            f"replicas {found.get('number_of_replicas')}"
        health = self.client.cluster.health(index=index)["status"]
        return f"{found.get('number_of_shards')} shard(s), {replicas}, {health}"

    @property
    def _target(self) -> str:
        return self._write_index or self.alias

    # ---- writes -------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def upsert(self, docs: Sequence[ImageDoc]) -> None:
        self._ensure_index()
        paths = {d.image_id: d.relative_path for d in docs}
        actions = ({"_index": self._target, "_id": d.image_id, "_source": _source(d)} for d in docs)
        self._bulk(actions, paths)

    @unavailable_on_connection_errors
    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) of documents indexed before dates and path words
        were kept: partial updates, the vectors stay as they are."""
        self._ensure_index()
        paths = {image_id: path for image_id, path, _, _ in dates}
        actions = ({"_op_type": "update", "_index": self._target, "_id": image_id,
                    "doc": {"taken": taken, "taken_source": source, "name_words": name_words(path)}}
                   for image_id, path, taken, source in dates)
        self._bulk(actions, paths)

    @unavailable_on_connection_errors
    def delete(self, image_ids: Iterable[str]) -> None:
        self._ensure_index()
        actions = ({"_op_type": "delete", "_index": self._target, "_id": i} for i in image_ids)
        self._bulk(actions, {}, ignore_status=(404,))

    def _bulk(self, actions, paths: dict[str, str], ignore_status=()) -> None:
        """Every per-document failure is collected: none is silently lost.

        Items refused because the cluster is busy or its shards are not ready (429/503, e.g. right after
        a restart) make the whole call BackendUnavailable: writes are idempotent, so the caller retries it.
        """
        failures, busy = [], []
        # Two requests in flight: the client serialises one chunk while the server indexes the other.
        for ok, item in helpers.parallel_bulk(self.client, actions, thread_count=BULK_THREADS, chunk_size=500,
                                              raise_on_error=False, ignore_status=ignore_status):
            if not ok:
                result = next(iter(item.values()))
                failure = (paths.get(result.get("_id"), result.get("_id")), item_reason(result))
                if result.get("status") in (401, 403):  # every item would fail alike: one sentence
                    raise access_denied(self.url, result["status"], item_reason(result))
                (busy if result.get("status") in BUSY_STATUSES else failures).append(failure)
        self._needs_refresh = True
        if busy:
            raise BackendUnavailable(f"Elasticsearch at {self.url} could not take {len(busy)} document(s) now "
                                   f"(e.g. {busy[0][0]}: {busy[0][1]}); the write will be repeated.")
        if failures:
            raise StoreError(f"Elasticsearch rejected {len(failures)} document(s), e.g. {failures[0][0]}: "
                             f"{failures[0][1]}", failures)

    @unavailable_on_connection_errors
    def set_meta(self, key: str, value: str) -> None:
        self._ensure_index()
        self._meta_cache = None
        for index in self._meta_indices():
            meta = self._read_meta(index)
            meta[key] = value
            self.client.indices.put_mapping(index=index, meta=meta)

    def _meta_indices(self) -> list[str]:
        return [self._write_index] if self._write_index else self._concrete_indices()

    def _read_meta(self, index: str) -> dict:
        found = self.client.indices.get_mapping(index=index)
        return dict(next(iter(found.values()))["mappings"].get("_meta", {}))

    @unavailable_on_connection_errors
    def checkpoint(self) -> None:
        if self._ready:
            self.client.indices.refresh(index=self._target)
            self._needs_refresh = False

    # ---- reads --------------------------------------------------------------------------------
    def _fresh(self) -> None:
        """Read-your-writes inside this process without a refresh per bulk (which would cap throughput)."""
        if self._needs_refresh:
            self.client.indices.refresh(index=self.alias)
            self._needs_refresh = False

    @unavailable_on_connection_errors
    def get(self, image_id: str) -> ImageDoc | None:
        try:  # a missing document or a missing index
            found = self.client.get(index=self.alias, id=image_id)
        except NotFoundError:
            return None
        return _doc(found["_source"])

    @unavailable_on_connection_errors
    def count(self) -> int:
        self._fresh()
        try:
            return int(self.client.count(index=self.alias)["count"])
        except NotFoundError:  # not created yet
            return 0

    @unavailable_on_connection_errors
    def get_meta(self, key: str) -> str | None:
        cached = self._meta_cache
        if cached is None:
            indices = self._concrete_indices()
            if not indices:
                return None
            cached = self._meta_cache = (indices[0], self._read_meta(indices[0]))
        return cached[1].get(key)

    def _check_dims(self, vector: np.ndarray) -> None:
        dims = self.index_dims()
        if dims and vector.shape != (dims,):
            raise StoreError(f"The query vector has {vector.size} dims but the index {self.alias} holds {dims}-dim "
                             "image embeddings: the text and image models must share one embedding space.")

    @unavailable_on_connection_errors
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            folder: str | None = None, after: str | None = None, before: str | None = None) -> list[Match]:
        self._fresh()
        vector = np.asarray(vector, dtype=float)
        self._check_dims(vector)
        body = knn_body(vector, k, num_candidates, filters(normalise_folder(folder), after, before), self.oversample)
        for attempt in range(3):
            try:
                found = self.client.search(index=self.alias, body=body)
            except NotFoundError:  # not created yet, or the alias moved on while this search was routed
                if self._missing():
                    raise IndexMissing(f"The Elasticsearch index {self.alias} does not exist yet: run "
                                       "`findimage index` (or check FINDIMAGE_INDEX).") from None
                if attempt == 2:
                    raise
                continue
            if not found["_shards"].get("failed") or attempt == 2:
                break
            log.info("kNN search had shard failures (%s); retrying", found["_shards"].get("failures"))
        hits = found["hits"]["hits"]
        self._notice_index(hits)
        return exact_top(hits, k, self.oversample)

    def _notice_index(self, hits: list[dict]) -> None:
        cached = self._meta_cache
        if hits and cached is not None and hits[0]["_index"] != cached[0]:
            self._meta_cache = None  # the alias now points elsewhere: read that index's models again

    @unavailable_on_connection_errors
    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               folder: str | None = None, after: str | None = None,
               before: str | None = None) -> tuple[list[Match], list[Match]]:
        """The CLIP and the path-word (BM25) rankings in one `_msearch`, both under the same filters."""
        self._fresh()
        vector = np.asarray(vector, dtype=float)
        self._check_dims(vector)
        filter_ = filters(normalise_folder(folder), after, before)
        found = self.client.msearch(searches=[{"index": self.alias},
                                              knn_body(vector, k, num_candidates, filter_, self.oversample),
                                              {"index": self.alias}, names_body(vector, words, k, filter_)])
        by_image, by_name = found["responses"]
        for response in (by_image, by_name):
            if "error" in response:
                self._raise_search_error(response)
        self._notice_index(by_image["hits"]["hits"])
        return exact_top(by_image["hits"]["hits"], k, self.oversample), matches(by_name["hits"]["hits"], "clip")

    def _raise_search_error(self, response: dict) -> None:
        error = response["error"]
        if response.get("status") == 404 and self._missing():
            raise IndexMissing(f"The Elasticsearch index {self.alias} does not exist yet: run "
                               "`findimage index` (or check FINDIMAGE_INDEX).")
        if response.get("status") in BUSY_STATUSES:
            raise BackendUnavailable(f"Elasticsearch at {self.url} cannot search now ({error.get('type')}); "
                                     "try again in a minute.")
        raise StoreError(f"Elasticsearch refused the search: {error.get('reason') or error.get('type')}.")

    @unavailable_on_connection_errors
    def file_states(self) -> dict[str, FileState]:
        """Every document's state, including writes of other processes not refreshed yet (start of a pass)."""
        try:
            self.client.indices.refresh(index=self.alias)
        except NotFoundError:  # not created yet: nothing is stored
            return {}
        self._needs_refresh = False
        hits = helpers.scan(self.client, index=self.alias, query={"query": {"match_all": {}}},
                            _source=STATE_FIELDS, size=5000)
        return {h["_source"]["relative_path"]: FileState(*(h["_source"].get(f) or "" if f == "taken_source"
                                                           else h["_source"][f] for f in STATE_FIELDS))
                for h in hits}

    @unavailable_on_connection_errors
    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        self._fresh()
        wanted, found = sorted(set(sha256s)), {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            query = {"bool": {"filter": [{"terms": {"sha256": chunk}}, {"term": {"model_id": model_id}}]}}
            try:
                result = self.client.search(index=self.alias, query=query, size=len(chunk),
                                            source=["sha256", "image_embedding"], collapse={"field": "sha256"})
            except NotFoundError:  # not created yet: nothing to reuse
                return {}
            for hit in result["hits"]["hits"]:
                found[hit["_source"]["sha256"]] = np.asarray(hit["_source"]["image_embedding"], np.float32)
        return found

    def close(self) -> None:
        self.client.close()


def _source(d: ImageDoc) -> dict:
    return {"image_id": d.image_id, "image_name": d.image_name, "relative_path": d.relative_path,
            "image_embedding": np.asarray(d.image_embedding, dtype=float).tolist(), "sha256": d.sha256,
            "size": d.size, "mtime": d.mtime, "width": d.width, "height": d.height, "indexed_at": d.indexed_at,
            "model_id": d.model_id, "name_words": name_words(d.relative_path), "taken": d.taken,
            "taken_source": d.taken_source or None}


def _doc(s: dict) -> ImageDoc:
    return ImageDoc(s["image_id"], s["image_name"], s["relative_path"],
                    np.asarray(s["image_embedding"], np.float32), s["sha256"], s["size"], s["mtime"], s["width"],
                    s["height"], s["indexed_at"], s["model_id"], s.get("taken"), s.get("taken_source") or "")


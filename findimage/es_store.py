"""Elasticsearch kNN store: the seed's dense_vector index behind an alias, written with helpers.bulk.

The alias (FINDIMAGE_INDEX, default `my-image-embeddings`) points at one concrete index; a full rebuild
writes a new concrete index and swaps the alias atomically, so searches keep working meanwhile.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Iterable, Sequence

import numpy as np
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch, NotFoundError, helpers

from .records import DIMS, FileState, ImageDoc, Match, normalise_folder
from .store import StoreError, StoreUnavailable, default_num_candidates

log = logging.getLogger(__name__)

STATE_FIELDS = ["image_id", "relative_path", "sha256", "size", "mtime", "model_id"]
MATCH_FIELDS = ["image_id", "image_name", "relative_path", "sha256"]


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
        },
    }


def _unavailable_on_connection_errors(method):
    """Connection trouble becomes StoreUnavailable with one sentence a user can act on."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ConnectionError, ConnectionTimeout) as exc:
            raise StoreUnavailable(
                f"Elasticsearch at {self.url} is not reachable ({type(exc).__name__}). Check that it is running "
                "and that ELASTICSEARCH_URL and the credentials are right; findimage retries by itself.") from None
        except ApiError as exc:
            if exc.meta.status in (502, 503, 504):
                raise StoreUnavailable(f"Elasticsearch at {self.url} is not ready ({exc.meta.status}).") from None
            raise

    return wrapper


class ElasticsearchStore:
    def __init__(self, client: Elasticsearch, url: str, alias: str = "my-image-embeddings",
                 index_options: str = "int8_hnsw", dims: int = DIMS):
        self.client = client
        self.url = url
        self.alias = alias
        self.index_options = index_options
        self.dims = dims
        self.description = f"elasticsearch ({url}, index {alias})"
        self._write_index: str | None = None  # the concrete index a rebuild writes into
        self._needs_refresh = False
        self._ready = False

    @classmethod
    def from_settings(cls, settings, dims: int = DIMS) -> "ElasticsearchStore":
        return cls(make_client(settings), settings.elasticsearch_url, settings.index_name,
                   settings.es_index_options, dims)

    # ---- index lifecycle ----------------------------------------------------------------------
    def _ensure_index(self) -> None:
        """Create the first concrete index behind the alias on first use."""
        if self._ready:
            return
        if not self.client.indices.exists_alias(name=self.alias) and not self.client.indices.exists(
                index=self.alias):
            concrete = self._create_concrete()
            try:
                self.client.indices.put_alias(index=concrete, name=self.alias)
            except ApiError:  # another process created the alias first
                self.client.indices.delete(index=concrete, ignore_unavailable=True)
        self._ready = True

    def _create_concrete(self) -> str:
        name = f"{self.alias}-{time.strftime('%Y%m%d%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
        self.client.indices.create(index=name, mappings=mapping(self.dims, self.index_options),
                                   settings={"number_of_shards": 1, "number_of_replicas": 0})
        return name

    def _concrete_indices(self) -> list[str]:
        try:
            return list(self.client.indices.get_alias(name=self.alias))
        except NotFoundError:
            return [self.alias] if self.client.indices.exists(index=self.alias) else []

    @_unavailable_on_connection_errors
    def begin_rebuild(self) -> None:
        self._ensure_index()
        self._write_index = self._create_concrete()

    @_unavailable_on_connection_errors
    def finish_rebuild(self) -> None:
        new, old = self._write_index, self._concrete_indices()
        if new is None:
            return
        self.client.indices.refresh(index=new)
        actions = [{"remove": {"index": i, "alias": self.alias}} for i in old if i != self.alias]
        self.client.indices.update_aliases(actions=[*actions, {"add": {"index": new, "alias": self.alias}}])
        for index in old:
            if index != self.alias:
                self.client.indices.delete(index=index, ignore_unavailable=True)
        self._write_index = None

    @_unavailable_on_connection_errors
    def drop(self) -> None:
        """Delete the alias's indices (tests, uninstall)."""
        for index in self._concrete_indices() + ([self._write_index] if self._write_index else []):
            self.client.indices.delete(index=index, ignore_unavailable=True)
        self._ready = False

    @property
    def _target(self) -> str:
        return self._write_index or self.alias

    # ---- writes -------------------------------------------------------------------------------
    @_unavailable_on_connection_errors
    def upsert(self, docs: Sequence[ImageDoc]) -> None:
        self._ensure_index()
        paths = {d.image_id: d.relative_path for d in docs}
        actions = ({"_index": self._target, "_id": d.image_id, "_source": _source(d)} for d in docs)
        self._bulk(actions, paths)

    @_unavailable_on_connection_errors
    def delete(self, image_ids: Iterable[str]) -> None:
        self._ensure_index()
        actions = ({"_op_type": "delete", "_index": self._target, "_id": i} for i in image_ids)
        self._bulk(actions, {}, ignore_status=(404,))

    def _bulk(self, actions, paths: dict[str, str], ignore_status=()) -> None:
        failures = []
        for ok, item in helpers.streaming_bulk(self.client, actions, chunk_size=500, raise_on_error=False,
                                               max_retries=3, initial_backoff=1, ignore_status=ignore_status):
            if not ok:
                result = next(iter(item.values()))
                reason = (result.get("error") or {}).get("reason") or f"status {result.get('status')}"
                failures.append((paths.get(result.get("_id"), result.get("_id")), reason))
        self._needs_refresh = True
        if failures:
            raise StoreError(f"Elasticsearch rejected {len(failures)} document(s), e.g. {failures[0][0]}: "
                             f"{failures[0][1]}", failures)

    @_unavailable_on_connection_errors
    def set_meta(self, key: str, value: str) -> None:
        self._ensure_index()
        for index in self._meta_indices():
            meta = self._read_meta(index)
            meta[key] = value
            self.client.indices.put_mapping(index=index, meta=meta)

    def _meta_indices(self) -> list[str]:
        return [self._write_index] if self._write_index else self._concrete_indices()

    def _read_meta(self, index: str) -> dict:
        found = self.client.indices.get_mapping(index=index)
        return dict(next(iter(found.values()))["mappings"].get("_meta", {}))

    @_unavailable_on_connection_errors
    def checkpoint(self) -> None:
        if self._ready:
            self.client.indices.refresh(index=self._target)
            self._needs_refresh = False

    # ---- reads --------------------------------------------------------------------------------
    def _fresh(self) -> None:
        """Read-your-writes inside this process without a refresh per bulk (which would cap throughput)."""
        self._ensure_index()
        if self._needs_refresh:
            self.client.indices.refresh(index=self.alias)
            self._needs_refresh = False

    @_unavailable_on_connection_errors
    def get(self, image_id: str) -> ImageDoc | None:
        self._ensure_index()
        try:
            found = self.client.get(index=self.alias, id=image_id)
        except NotFoundError:
            return None
        return _doc(found["_source"])

    @_unavailable_on_connection_errors
    def count(self) -> int:
        self._fresh()
        return int(self.client.count(index=self.alias)["count"])

    @_unavailable_on_connection_errors
    def get_meta(self, key: str) -> str | None:
        self._ensure_index()
        indices = self._concrete_indices()
        return self._read_meta(indices[0]).get(key) if indices else None

    @_unavailable_on_connection_errors
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            folder: str | None = None) -> list[Match]:
        self._fresh()
        knn = {"field": "image_embedding", "query_vector": np.asarray(vector, dtype=float).tolist(), "k": k,
               "num_candidates": min(10_000, max(k, num_candidates or default_num_candidates(k)))}
        folder = normalise_folder(folder)
        if folder is not None:
            knn["filter"] = {"prefix": {"relative_path": folder + "/"}}
        found = self.client.search(index=self.alias, knn=knn, size=k, source=MATCH_FIELDS)
        return [Match(h["_source"]["image_id"], h["_source"]["image_name"], h["_source"]["relative_path"],
                      float(h["_score"]), h["_source"].get("sha256", "")) for h in found["hits"]["hits"]]

    @_unavailable_on_connection_errors
    def file_states(self) -> dict[str, FileState]:
        self._fresh()
        hits = helpers.scan(self.client, index=self.alias, query={"query": {"match_all": {}}},
                            _source=STATE_FIELDS, size=5000)
        return {h["_source"]["relative_path"]: FileState(*(h["_source"][f] for f in STATE_FIELDS)) for h in hits}

    @_unavailable_on_connection_errors
    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        self._fresh()
        wanted, found = sorted(set(sha256s)), {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            query = {"bool": {"filter": [{"terms": {"sha256": chunk}}, {"term": {"model_id": model_id}}]}}
            result = self.client.search(index=self.alias, query=query, size=len(chunk),
                                        source=["sha256", "image_embedding"],
                                        collapse={"field": "sha256"})
            for hit in result["hits"]["hits"]:
                found[hit["_source"]["sha256"]] = np.asarray(hit["_source"]["image_embedding"], np.float32)
        return found

    def close(self) -> None:
        self.client.close()


def make_client(settings) -> Elasticsearch:
    auth = {}
    if settings.elasticsearch_api_key:
        auth["api_key"] = settings.elasticsearch_api_key
    elif settings.elasticsearch_username:
        auth["basic_auth"] = (settings.elasticsearch_username, settings.elasticsearch_password)
    if settings.elasticsearch_ca_certs:
        auth["ca_certs"] = str(settings.elasticsearch_ca_certs)
    return Elasticsearch(settings.elasticsearch_url, request_timeout=settings.es_timeout_seconds,
                         retry_on_timeout=True, max_retries=2, **auth)


def _source(d: ImageDoc) -> dict:
    return {"image_id": d.image_id, "image_name": d.image_name, "relative_path": d.relative_path,
            "image_embedding": np.asarray(d.image_embedding, dtype=float).tolist(), "sha256": d.sha256,
            "size": d.size, "mtime": d.mtime, "width": d.width, "height": d.height, "indexed_at": d.indexed_at,
            "model_id": d.model_id}


def _doc(s: dict) -> ImageDoc:
    return ImageDoc(s["image_id"], s["image_name"], s["relative_path"],
                    np.asarray(s["image_embedding"], np.float32), s["sha256"], s["size"], s["mtime"], s["width"],
                    s["height"], s["indexed_at"], s["model_id"])

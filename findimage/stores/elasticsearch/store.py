"""Elasticsearch kNN store: documents in the blog post's dense_vector index behind an alias, written with helpers.bulk.

The alias (FINDIMAGE_INDEX, default `my-image-embeddings`) points at one concrete index,
`<alias>-v1` at first; a full rebuild writes `<alias>-v<N+1>` and swaps the alias atomically, so
searches keep working meanwhile, and keeps the index it replaced as a rollback copy until the next
rebuild. Only a store opened as writer (the indexer) creates indices: a reader of a missing alias
finds nothing (count 0) or is told to run the indexer (search).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, NotFoundError, helpers

from findimage.config import Settings, public_url
from findimage.errors import BackendUnavailable, IndexMissing, StoreError
from findimage.names import name_words
from findimage.records import DIMS, FileState, ImageDoc, Match, ReadText, normalise_folder
from findimage.stores.elasticsearch.client import (
    BUSY_STATUSES,
    access_denied,
    item_reason,
    make_client,
    unavailable_on_connection_errors,
)
from findimage.stores.elasticsearch.index import IndexLayout
from findimage.stores.elasticsearch.query import (
    TEXT_FIELDS,
    exact_top,
    filters,
    hit_lines,
    knn_body,
    lines_value,
    matches,
    names_body,
    source_lines,
    text_body,
)
from findimage.stores.text import checked, from_json, lines_json, lines_words, one_line_first, query

log = logging.getLogger(__name__)

STATE_FIELDS = ["image_id", "relative_path", "sha256", "size", "mtime", "model_id", "taken_source"]
BULK_THREADS = 2
# A reading is written onto the document only while it holds the content the text was read from.
SET_TEXT_SCRIPT = ("if (ctx._source.sha256 == params.sha256) { ctx._source.putAll(params.text); } "
                   "else { ctx.op = 'noop'; }")


class ElasticsearchStore:
    """Documents and searches on the alias; its indices (creation, rebuilds, status) are `indices`."""

    def __init__(self, client: Elasticsearch, url: str | None, alias: str = Settings.index_name,
                 index_options: str = Settings.es_index_options, dims: int = DIMS, shards: int = Settings.es_shards,
                 replicas: str = Settings.es_replicas, oversample: float = Settings.es_rescore_oversample,
                 hnsw_m: int = Settings.es_hnsw_m, hnsw_ef_construction: int = Settings.es_hnsw_ef_construction,
                 force_merge_minutes: float = Settings.es_force_merge_minutes,
                 min_candidates: int = Settings.es_num_candidates):
        """Defaults are the settings' own (findimage.config): a store built directly ranks as configured ones do."""
        self.client = client
        self.oversample = oversample  # kNN candidates per result, re-ranked by exact cosine (1: none)
        self.min_candidates = min_candidates  # HNSW candidates per search, at least
        self.shards = shards
        self.replicas = replicas
        self.url = public_url(url)  # only ever shown: the client holds the credentials
        self.alias = alias
        self.index_options = index_options
        self.dims = dims
        self.description = f"elasticsearch ({self.url}, index {alias})"
        self._needs_refresh = False
        self.indices = IndexLayout(client, self.url, alias, index_options, dims, shards, replicas, hnsw_m,
                                   hnsw_ef_construction, force_merge_minutes)
        # Whether the index a rebuild writes may hold text yet: only set_texts puts any there (begin_rebuild
        # makes it empty, under a name never used before), so until then no upsert has text to keep.
        self._rebuild_has_texts = False
        # (concrete index, its _meta): read once per index, so a query costs one search request. A search
        # answered by another index (a rebuild swapped the alias) drops it; see knn.
        self._meta_cache: tuple[str, dict] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, dims: int = DIMS, writer: bool = False,
                      client: Elasticsearch | None = None) -> ElasticsearchStore:
        store = cls(client or make_client(settings), settings.elasticsearch_url, settings.index_name,
                    settings.es_index_options, dims, settings.es_shards, settings.es_replicas,
                    settings.es_rescore_oversample, settings.es_hnsw_m, settings.es_hnsw_ef_construction,
                    settings.es_force_merge_minutes, settings.es_num_candidates)
        if writer:
            store.open_for_writing()
        return store

    # ---- writes -------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def upsert(self, docs: Sequence[ImageDoc]) -> None:
        """Whole documents; one that keeps its content keeps the text read from it (read first, in real
        time), one with other content loses it."""
        self.indices.ensure()
        paths = {d.image_id: d.relative_path for d in docs}
        # A rebuild's new index holds no text before set_texts writes some: looking it up would cost the
        # server a read per document (a quarter of its bulk time) to find nothing.
        fresh = self.indices.write_index is not None and not self._rebuild_has_texts
        kept = {} if fresh else self._texts_kept(docs)
        actions = ({"_index": self.indices.target, "_id": d.image_id,
                    "_source": {**_source(d), **kept.get(d.image_id, {})}} for d in docs)
        self._bulk(actions, paths)

    def _texts_kept(self, docs: Sequence[ImageDoc]) -> dict[str, dict]:
        """The text fields of those documents already stored with the same content, by image id."""
        sha256s = {d.image_id: d.sha256 for d in docs}
        kept: dict[str, dict] = {}
        ids = list(sha256s)
        for start in range(0, len(ids), 1000):
            found = self.client.mget(index=self.indices.target, ids=ids[start:start + 1000],
                                     source_includes=TEXT_FIELDS)
            for item in found["docs"]:
                source = item.get("_source") or {}
                if item.get("found") and source.get("text_sha256") == sha256s.get(item["_id"]):
                    kept[item["_id"]] = source
        return kept

    @unavailable_on_connection_errors
    def set_texts(self, items: Sequence[tuple[str, str, ReadText]]) -> None:
        """Partial updates of the index being written (during a rebuild, the new one), each applied only
        while the document holds the content its text was read from; documents gone are skipped."""
        self.indices.ensure()
        self._rebuild_has_texts = self.indices.write_index is not None
        actions = ({"_op_type": "update", "_index": self.indices.target, "_id": image_id, "retry_on_conflict": 3,
                    "script": {"source": SET_TEXT_SCRIPT, "lang": "painless",
                               "params": {"sha256": sha256, "text": _text_source(sha256, checked(read))}}}
                   for image_id, sha256, read in items)
        self._bulk(actions, {}, ignore_status=(404,))

    @unavailable_on_connection_errors
    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) of documents indexed before dates and path words
        were kept: partial updates, the vectors stay as they are."""
        self.indices.ensure()
        paths = {image_id: path for image_id, path, _, _ in dates}
        actions = ({"_op_type": "update", "_index": self.indices.target, "_id": image_id,
                    "doc": {"taken": taken, "taken_source": source, "name_words": name_words(path)}}
                   for image_id, path, taken, source in dates)
        self._bulk(actions, paths)

    @unavailable_on_connection_errors
    def delete(self, image_ids: Iterable[str]) -> None:
        self.indices.ensure()
        actions = ({"_op_type": "delete", "_index": self.indices.target, "_id": i} for i in image_ids)
        self._bulk(actions, {}, ignore_status=(404,))

    def _bulk(self, actions: Iterable[dict[str, Any]], paths: dict[str, str],
              ignore_status: tuple[int, ...] = ()) -> None:
        """Every per-document failure is collected: none is silently lost.

        Items refused because the cluster is busy or its shards are not ready (429/503, e.g. right after
        a restart) make the whole call BackendUnavailable: writes are idempotent, so the caller retries it.
        """
        failures: list[tuple[str, str]] = []
        busy: list[tuple[str, str]] = []
        # Two requests in flight: the client serialises one chunk while the server indexes the other.
        for ok, item in helpers.parallel_bulk(self.client, actions, thread_count=BULK_THREADS, chunk_size=500,
                                              raise_on_error=False, ignore_status=ignore_status):
            if not ok:
                result = next(iter(item.values()))
                if result.get("status") in ignore_status:  # the helper yields them as failures all the same
                    continue
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
        self.indices.ensure()
        self._meta_cache = None
        for index in self._meta_indices():
            meta = self.indices.read_meta(index)
            meta[key] = value
            self.client.indices.put_mapping(index=index, meta=meta)

    def _meta_indices(self) -> list[str]:
        return [self.indices.write_index] if self.indices.write_index else self.indices.concrete_indices()

    # ---- the indices (IndexLayout) -----------------------------------------------------------
    def open_for_writing(self) -> None:
        self.indices.open_for_writing()

    def begin_rebuild(self) -> None:
        self.indices.begin_rebuild()
        self._rebuild_has_texts = False

    def finish_rebuild(self) -> None:
        self._meta_cache = None  # the alias moves: the new index's models are read again
        self.indices.finish_rebuild()

    def drop(self) -> None:
        self.indices.drop()

    def details(self) -> list[tuple[str, str]]:
        return self.indices.details()

    @unavailable_on_connection_errors
    def checkpoint(self) -> None:
        if self.indices.ready:
            self.client.indices.refresh(index=self.indices.target)
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
            indices = self.indices.concrete_indices()
            if not indices:
                return None
            cached = self._meta_cache = (indices[0], self.indices.read_meta(indices[0]))
        return cached[1].get(key)

    def _check_dims(self, vector: np.ndarray) -> None:
        dims = self.indices.index_dims()
        if dims and vector.shape != (dims,):
            raise StoreError(f"The query vector has {vector.size} dims but the index {self.alias} holds {dims}-dim "
                             "image embeddings: the text and image models must share one embedding space.")

    @unavailable_on_connection_errors
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            folder: str | None = None, after: str | None = None, before: str | None = None) -> list[Match]:
        self._fresh()
        vector = np.asarray(vector, dtype=float)
        self._check_dims(vector)
        body = knn_body(vector, k, num_candidates, filters(normalise_folder(folder), after, before), self.oversample,
                        self.min_candidates)
        for attempt in range(3):
            try:
                found = self.client.search(index=self.alias, body=body)
            except NotFoundError:  # not created yet, or the alias moved on while this search was routed
                if self.indices.missing():
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
        by_image, by_name, _ = self._rankings(vector, words, k, num_candidates, folder, after, before, False)
        return by_image, by_name

    @unavailable_on_connection_errors
    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         folder: str | None = None, after: str | None = None,
                         before: str | None = None) -> tuple[list[Match], list[Match], list[Match]]:
        """`hybrid` and `text_ranking` in one `_msearch`: a text query stays one search request."""
        return self._rankings(vector, words, k, num_candidates, folder, after, before, True)

    def _rankings(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None,
                  folder: str | None, after: str | None, before: str | None,
                  with_text: bool) -> tuple[list[Match], list[Match], list[Match]]:
        self._fresh()
        vector = np.asarray(vector, dtype=float)
        self._check_dims(vector)
        filter_ = filters(normalise_folder(folder), after, before)
        searches = [{"index": self.alias},
                    knn_body(vector, k, num_candidates, filter_, self.oversample, self.min_candidates),
                    {"index": self.alias}, names_body(vector, words, k, filter_)]
        text_words = query(words) if with_text and k > 0 else []
        if text_words:
            searches += [{"index": self.alias}, text_body(vector, text_words, k, filter_)]
        for attempt in range(3):
            responses = self.client.msearch(searches=searches)["responses"]
            # A busy or recovering cluster (all shards failed, 503/429) gets two more tries before the
            # user is told to come back in a minute: a search costs milliseconds, a lost answer a retype.
            busy = [r for r in responses if "error" in r and r.get("status") in BUSY_STATUSES]
            if not busy or attempt == 2:
                break
            log.info("search answered %s (%s); retrying", busy[0].get("status"), busy[0]["error"].get("type"))
            time.sleep(0.25 * (attempt + 1))
        for response in responses:
            if "error" in response:
                self._raise_search_error(response)
        by_image, by_name = responses[0]["hits"]["hits"], responses[1]["hits"]["hits"]
        self._notice_index(by_image)
        by_text = self._text_matches(responses[2]["hits"]["hits"], text_words, k) if text_words else []
        return exact_top(by_image, k, self.oversample), matches(by_name, "clip"), by_text

    def _raise_search_error(self, response: dict) -> None:
        error = response["error"]
        if response.get("status") == 404 and self.indices.missing():
            raise IndexMissing(f"The Elasticsearch index {self.alias} does not exist yet: run "
                               "`findimage index` (or check FINDIMAGE_INDEX).")
        if response.get("status") in BUSY_STATUSES:
            raise BackendUnavailable(f"Elasticsearch at {self.url} cannot search now ({error.get('type')}); "
                                     "try again in a minute.")
        raise StoreError(f"Elasticsearch refused the search: {error.get('reason') or error.get('type')}.")

    @unavailable_on_connection_errors
    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int, folder: str | None = None,
                     after: str | None = None, before: str | None = None) -> list[Match]:
        """One search: the k best by BM25 on the text words, those with every query word in one line first
        (text_body); the hits' lines give the snippets."""
        wanted = query(words)
        if not wanted or k <= 0:
            return []
        self._fresh()
        vector = np.asarray(vector, dtype=float)
        self._check_dims(vector)
        body = text_body(vector, wanted, k, filters(normalise_folder(folder), after, before))
        try:
            found = self.client.search(index=self.alias, body=body)
        except NotFoundError:
            if self.indices.missing():
                raise IndexMissing(f"The Elasticsearch index {self.alias} does not exist yet: run "
                                   "`findimage index` (or check FINDIMAGE_INDEX).") from None
            raise
        hits = found["hits"]["hits"]
        self._notice_index(hits)
        return self._text_matches(hits, wanted, k)

    def _text_matches(self, hits: list[dict], words: Sequence[str], k: int) -> list[Match]:
        """A text_body answer's matches with their snippets. Elasticsearch put every one-line match first
        already; the lines confirm it (a reading stored before text_words held one value per line has its
        lines joined, so the query may have taken words of neighbouring lines for one line)."""
        found = matches(hits, "clip")
        held = [hit_lines(hit) for hit in hits]
        older = [(hit["_index"], match.image_id) for hit, match, lines in zip(hits, found, held, strict=True)
                 if lines is None]
        from_source: dict[str, list[str]] = {}
        if older:  # readings stored before text_lines_text was kept: their lines from _source
            docs = self.client.mget(docs=[{"_index": index, "_id": i} for index, i in older],
                                    source_includes=["text_lines.text"])["docs"]
            from_source = {d["_id"]: source_lines(d.get("_source") or {}) for d in docs if d.get("found")}
        return one_line_first(((match, from_source.get(match.image_id, []) if lines is None else lines)
                               for match, lines in zip(found, held, strict=True)), words, k)

    @unavailable_on_connection_errors
    def texts_by_sha256(self, sha256s: Iterable[str]) -> dict[str, ReadText]:
        """From the live index (during a rebuild too: the readings the new index reuses)."""
        self._fresh()
        wanted, found = sorted(set(sha256s)), {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            try:
                result = self.client.search(index=self.alias, query={"terms": {"text_sha256": chunk}},
                                            size=len(chunk), source={"includes": TEXT_FIELDS},
                                            collapse={"field": "text_sha256"})
            except NotFoundError:  # not created yet: nothing to reuse
                return {}
            for hit in result["hits"]["hits"]:
                s = hit["_source"]
                found[s["text_sha256"]] = from_json(s.get("text_state", ""), s.get("text_reason") or "",
                                                    s.get("text_lines"))
        return found

    def _refreshed_target(self) -> str | None:
        """The index being written (the alias unless rebuilding), refreshed; None while there is none."""
        target = self.indices.target
        try:
            self.client.indices.refresh(index=target)
        except NotFoundError:
            return None
        if target == self.alias:
            self._needs_refresh = False
        return target

    @unavailable_on_connection_errors
    def text_pending(self, limit: int) -> list[FileState]:
        """Of the index being written (during a rebuild, the new one), by path. A document holds a reading
        only of its current content (upsert and set_texts see to it), so "no reading" is the test."""
        target = self._refreshed_target()
        found: list[FileState] = []
        after: list | None = None
        while target is not None and len(found) < limit:
            size = min(limit - len(found), 5000)
            hits = self.client.search(
                index=target, query={"bool": {"must_not": [{"exists": {"field": "text_state"}}]}},
                sort=[{"relative_path": "asc"}], size=size, source=False, search_after=after,
                docvalue_fields=[{"field": f} for f in STATE_FIELDS], track_total_hits=False)["hits"]["hits"]
            found += [_state({f: h["fields"].get(f, [None])[0] for f in STATE_FIELDS}) for h in hits]
            if len(hits) < size:
                break
            after = hits[-1]["sort"]
        return found

    @unavailable_on_connection_errors
    def text_status(self) -> tuple[int, int]:
        """(documents with a reading, all documents) of the index being written."""
        target = self._refreshed_target()
        if target is None:
            return 0, 0
        found = self.client.search(index=target, size=0, track_total_hits=True,
                                   aggs={"read": {"filter": {"exists": {"field": "text_state"}}}})
        return int(found["aggregations"]["read"]["doc_count"]), int(found["hits"]["total"]["value"])

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
        return {h["_source"]["relative_path"]: _state(h["_source"]) for h in hits}

    @unavailable_on_connection_errors
    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        self._fresh()
        wanted, found = sorted(set(sha256s)), {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            query = {"bool": {"filter": [{"terms": {"sha256": chunk}}, {"term": {"model_id": model_id}}]}}
            try:
                result = self.client.search(index=self.alias, query=query, size=len(chunk),
                                            source={"includes": ["sha256", "image_embedding"]},
                                            collapse={"field": "sha256"})
            except NotFoundError:  # not created yet: nothing to reuse
                return {}
            for hit in result["hits"]["hits"]:
                found[hit["_source"]["sha256"]] = np.asarray(hit["_source"]["image_embedding"], np.float32)
        return found

    def close(self) -> None:
        self.client.close()


def _source(d: ImageDoc) -> dict:
    return {"image_id": d.image_id, "image_name": d.image_name, "relative_path": d.relative_path,
            "image_embedding": _vector_json(d.image_embedding), "sha256": d.sha256,
            "size": d.size, "mtime": d.mtime, "width": d.width, "height": d.height, "indexed_at": d.indexed_at,
            "model_id": d.model_id, "name_words": name_words(d.relative_path), "taken": d.taken,
            "taken_source": d.taken_source or None}


def _vector_json(vector: np.ndarray) -> list[float]:
    """The float32 vector as JSON numbers of 9 decimals: a float32's own value as a double prints with 17
    digits, which doubles the bytes the client serialises and the server parses, stores and logs per
    document. 9 decimals give back the same float32 for nearly every component (all but the smallest,
    which move by under 1e-9), far below what the int8 codes or the model resolve."""
    return np.round(np.asarray(vector, dtype=np.float64), 9).tolist()


def _text_source(sha256: str, read: ReadText) -> dict:
    return {"text_sha256": sha256, "text_state": read.state, "text_reason": read.reason,
            "text_lines": lines_json(read.lines), "text_lines_text": lines_value([line.text for line in read.lines]),
            "text_words": lines_words(read)}


def _state(s: dict[str, Any]) -> FileState:
    """The STATE_FIELDS of a document's source."""
    return FileState(s["image_id"], s["relative_path"], s["sha256"], s["size"], s["mtime"], s["model_id"],
                     s.get("taken_source") or "")


def _doc(s: dict) -> ImageDoc:
    return ImageDoc(s["image_id"], s["image_name"], s["relative_path"],
                    np.asarray(s["image_embedding"], np.float32), s["sha256"], s["size"], s["mtime"], s["width"],
                    s["height"], s["indexed_at"], s["model_id"], s.get("taken"), s.get("taken_source") or "")


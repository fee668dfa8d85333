"""Elasticsearch kNN store: documents in the blog post's dense_vector index behind an alias, written with helpers.bulk.

The alias (FINDIMAGE_INDEX, default `my-image-embeddings`) points at one concrete index,
`<alias>-v1` at first; a full rebuild writes `<alias>-v<N+1>` and swaps the alias atomically, so
searches keep working meanwhile, and keeps the index it replaced as a rollback copy until the next
rebuild. Only a store opened as writer (the indexer) creates indices: a reader of a missing alias
finds nothing (count 0) or is told to run the indexer (search).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np
from elasticsearch import Elasticsearch, NotFoundError, helpers

from findimage.config import ElasticsearchSettings
from findimage.fingerprint import Fingerprint
from findimage.names import name_words
from findimage.query import EVERYWHERE, Filters
from findimage.records import FileState, ImageDoc, Match, ReadText
from findimage.stores.elasticsearch.client import make_client, unavailable_on_connection_errors
from findimage.stores.elasticsearch.fingerprints import Fingerprints
from findimage.stores.elasticsearch.index import IndexLayout
from findimage.stores.elasticsearch.query import STATE_FIELDS, file_state, fingerprint_source
from findimage.stores.elasticsearch.search import Searches
from findimage.stores.elasticsearch.texts import Texts
from findimage.stores.elasticsearch.view import AliasView


class ElasticsearchStore:
    """Documents on the alias. Composed of its indices (creation, rebuilds, status: `indices`), the view of
    the alias its parts share (`view`), the searches (search.Searches) and the readings (texts.Texts)."""

    def __init__(self, client: Elasticsearch, settings: ElasticsearchSettings, *, alias: str | None = None,
                 dims: int | Callable[[], int] | None = None, refresh_deletes: bool = False):
        """The store on `alias` (None: FINDIMAGE_INDEX), its indices laid out and searched as `settings` say.
        `refresh_deletes`: a deletion is refreshed at once, so no search of any process finds the documents
        once `delete` returns (for a store of what people may ask to have forgotten). `dims`: the image model's
        vector size (or how to learn it), which an index this store creates maps; only writers need it."""
        self.client = client
        self.refresh_deletes = refresh_deletes
        self.alias = alias or settings.index_name
        self.indices = IndexLayout(client, settings, self.alias, dims)
        self.url = self.indices.url  # only ever shown: the client holds the credentials
        self.description = f"elasticsearch ({self.url}, index {self.alias})"
        self.view = AliasView(client, self.url, self.alias, self.indices)
        self._search = Searches(self.view, settings)
        self._texts = Texts(self.view)
        self._fingerprints = Fingerprints(self.view)

    @classmethod
    def from_settings(cls, settings: ElasticsearchSettings, writer: bool = False,
                      dims: int | Callable[[], int] | None = None) -> ElasticsearchStore:
        """The configured store on a client of its own; opened as `writer`, it may create and upgrade its indices
        (mapping `dims`, the image model's vector size)."""
        store = cls(make_client(settings), settings, dims=dims)
        if writer:
            store.open_for_writing()
        return store

    @property
    def oversample(self) -> float:
        return self._search.oversample

    @oversample.setter
    def oversample(self, value: float) -> None:  # benchmarks compare re-ranking depths on one store
        self._search.settings = replace(self._search.settings, es_rescore_oversample=value)

    @property
    def min_candidates(self) -> int:
        return self._search.settings.es_num_candidates

    # ---- writes -------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def upsert(self, docs: Sequence[ImageDoc]) -> None:
        """Whole documents; one that keeps its content keeps the text read from it (read first, in real
        time), one with other content loses it."""
        if not self.indices.ready:  # the documents' vector sizes matter only to the write that makes the index
            self.indices.ensure([int(np.size(d.image_embedding)) for d in docs])
        paths = {d.image_id: d.relative_path for d in docs}
        kept = self._texts.kept(docs)
        actions = ({"_index": self.indices.target, "_id": d.image_id,
                    "_source": {**_source(d), **kept.get(d.image_id, {})}} for d in docs)
        self.view.bulk(actions, paths)

    def set_texts(self, items: Sequence[tuple[str, str, ReadText]]) -> None:
        self._texts.set_texts(items)

    def set_fingerprints(self, items: Sequence[tuple[str, str, str]]) -> None:
        self._fingerprints.set_fingerprints(items)

    @unavailable_on_connection_errors
    def add_dates(self, dates: Sequence[tuple[str, str, str, str]]) -> None:
        """(image_id, relative_path, taken, taken_source) of documents indexed before dates and path words
        were kept: partial updates, the vectors stay as they are."""
        self.indices.ensure()
        paths = {image_id: path for image_id, path, _, _ in dates}
        actions = ({"_op_type": "update", "_index": self.indices.target, "_id": image_id,
                    "doc": {"taken": taken, "taken_source": source, "name_words": name_words(path)}}
                   for image_id, path, taken, source in dates)
        self.view.bulk(actions, paths)

    @unavailable_on_connection_errors
    def delete(self, image_ids: Iterable[str]) -> None:
        self.indices.ensure()
        actions = ({"_op_type": "delete", "_index": self.indices.target, "_id": i} for i in image_ids)
        self.view.bulk(actions, {}, ignore_status=(404,))
        if self.refresh_deletes:
            # Otherwise only this process's next search refreshes first (AliasView.fresh); others would
            # find them until the next periodic refresh, never if it is off. The documents stay in the
            # segment files until Lucene merges them away (docs/remembered-channels.md).
            self.view.refresh(self.indices.target)

    @unavailable_on_connection_errors
    def set_meta(self, key: str, value: str) -> None:
        self.indices.ensure()
        self.view.forget_meta()
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
        self._texts.rebuild_began()

    def finish_rebuild(self) -> None:
        self.view.forget_meta()  # the alias moves: the new index's models are read again
        self.indices.finish_rebuild()

    def rebuild_target(self) -> str | None:
        return self.indices.write_index

    def write_into(self, target: str | None) -> None:
        self.indices.write_into(target)

    def drop(self) -> None:
        self.indices.drop()

    def details(self) -> list[tuple[str, str]]:
        return self.indices.details()

    @unavailable_on_connection_errors
    def checkpoint(self) -> None:
        if self.indices.ready:
            self.view.refresh(self.indices.target)

    # ---- reads --------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def get(self, image_id: str) -> ImageDoc | None:
        try:  # a missing document or a missing index
            found = self.client.get(index=self.alias, id=image_id)
        except NotFoundError:
            return None
        return _doc(found["_source"])

    @unavailable_on_connection_errors
    def count(self) -> int:
        self.view.fresh()
        try:
            return int(self.client.count(index=self.alias)["count"])
        except NotFoundError:  # not created yet
            return 0

    @unavailable_on_connection_errors
    def get_meta(self, key: str) -> str | None:
        meta = self.view.meta()
        return None if meta is None else meta.get(key)

    @unavailable_on_connection_errors
    def file_states(self) -> dict[str, FileState]:
        """Every document's state, including writes of other processes not refreshed yet (start of a pass)."""
        if not self.view.refresh(self.alias):  # not created yet: nothing is stored
            return {}
        hits = helpers.scan(self.client, index=self.alias, query={"query": {"match_all": {}}},
                            _source=STATE_FIELDS, size=5000)
        return {h["_source"]["relative_path"]: file_state(h["_source"]) for h in hits}

    @unavailable_on_connection_errors
    def vectors_by_sha256(self, sha256s: Iterable[str], model_id: str) -> dict[str, np.ndarray]:
        self.view.fresh()
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

    # ---- searches (search.Searches) and readings (texts.Texts) -----------------------------------
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            filters: Filters = EVERYWHERE) -> list[Match]:
        return self._search.knn(vector, k, num_candidates, filters)

    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match]]:
        return self._search.hybrid(vector, words, k, num_candidates, filters)

    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match], list[Match]]:
        return self._search.hybrid_with_text(vector, words, k, num_candidates, filters)

    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int,
                     filters: Filters = EVERYWHERE) -> list[Match]:
        return self._search.text_ranking(vector, words, k, filters)

    def texts_by_sha256(self, sha256s: Iterable[str]) -> dict[str, ReadText]:
        return self._texts.texts_by_sha256(sha256s)

    def text_pending(self, limit: int) -> list[FileState]:
        return self._texts.text_pending(limit)

    def text_status(self) -> tuple[int, int]:
        return self._texts.text_status()

    # ---- fingerprints (fingerprints.Fingerprints) --------------------------------------------------
    def fingerprint_pending(self) -> list[FileState]:
        return self._fingerprints.fingerprint_pending()

    def near_copies(self, fingerprint: Fingerprint, filters: Filters = EVERYWHERE) -> list[Match]:
        return self._fingerprints.near_copies(fingerprint, filters)

    def fingerprints(self, folder: str | None = None) -> list[tuple[FileState, str]]:
        return self._fingerprints.fingerprints(folder)

    def fingerprints_of(self, image_ids: Iterable[str]) -> dict[str, str]:
        return self._fingerprints.fingerprints_of(image_ids)

    def close(self) -> None:
        self.client.close()


def _source(d: ImageDoc) -> dict:
    return {"image_id": d.image_id, "image_name": d.image_name, "relative_path": d.relative_path,
            "image_embedding": _vector_json(d.image_embedding), "sha256": d.sha256,
            "size": d.size, "mtime": d.mtime, "width": d.width, "height": d.height, "indexed_at": d.indexed_at,
            "model_id": d.model_id, "name_words": name_words(d.relative_path), "taken": d.taken,
            "taken_source": d.taken_source or None, **fingerprint_source(d.fingerprint)}


def _vector_json(vector: np.ndarray) -> list[float]:
    """The float32 vector as JSON numbers of 9 decimals: a float32's own value as a double prints with 17
    digits, which doubles the bytes the client serialises and the server parses, stores and logs per
    document. 9 decimals give back the same float32 for nearly every component (all but the smallest,
    which move by under 1e-9), far below what the int8 codes or the model resolve."""
    return np.round(np.asarray(vector, dtype=np.float64), 9).tolist()

def _doc(s: dict) -> ImageDoc:
    return ImageDoc(s["image_id"], s["image_name"], s["relative_path"],
                    np.asarray(s["image_embedding"], np.float32), s["sha256"], s["size"], s["mtime"], s["width"],
                    s["height"], s["indexed_at"], s["model_id"], s.get("taken"), s.get("taken_source") or "",
                    s.get("fingerprint") or "")


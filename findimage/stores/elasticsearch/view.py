"""The alias as one process sees it, shared by the store's writes, its searches (search.py) and its
text side (texts.py): read-your-writes without a refresh per bulk, the index's models read once per
concrete index, and bulk writes that collect every per-document failure."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, NotFoundError, helpers

from findimage.errors import BackendUnavailable, StoreError, check_vector_size
from findimage.stores.elasticsearch.client import BUSY_STATUSES, access_denied, item_reason
from findimage.stores.elasticsearch.index import IndexLayout, refuse_newer

BULK_THREADS = 2


class AliasView:
    def __init__(self, client: Elasticsearch, url: str | None, alias: str, indices: IndexLayout):
        self.client = client
        self.url = url  # only ever shown: the client holds the credentials
        self.alias = alias
        self.indices = indices
        self._needs_refresh = False
        # (concrete index, its _meta): read once per index, so a query costs one search request. A search
        # answered by another index (a rebuild swapped the alias) drops it (notice_index).
        self._meta_cache: tuple[str, dict] | None = None

    # ---- freshness ------------------------------------------------------------------------------
    def fresh(self) -> None:
        """Read-your-writes inside this process without a refresh per bulk (which would cap throughput)."""
        if self._needs_refresh:
            self.client.indices.refresh(index=self.alias)
            self._needs_refresh = False

    def refresh(self, index: str) -> bool:
        """Refresh `index` now; False when it does not exist."""
        try:
            self.client.indices.refresh(index=index)
        except NotFoundError:
            return False
        if index == self.alias:
            self._needs_refresh = False
        return True

    # ---- the index's models ---------------------------------------------------------------------
    def meta(self) -> dict | None:
        cached = self._meta_cache
        if cached is None:
            indices = self.indices.concrete_indices()
            if not indices:
                return None
            meta = self.indices.read_meta(indices[0])
            refuse_newer(indices[0], meta)  # a newer release's index: no query reads it as this one would
            cached = self._meta_cache = (indices[0], meta)
        return cached[1]

    def forget_meta(self) -> None:
        """Read the index's models and vector size again (the alias may point at a rebuilt index now)."""
        self._meta_cache = None
        self.indices.forget_dims()

    def notice_index(self, hits: list[dict]) -> None:
        cached = self._meta_cache
        if hits and cached is not None and hits[0]["_index"] != cached[0]:
            self.forget_meta()  # the alias now points elsewhere: read that index's models again

    def check_dims(self, vector: np.ndarray) -> None:
        """ModelMismatch (the sentence that says to rebuild) unless the query has the index's vector size."""
        check_vector_size(self.indices.index_dims(), vector.size)

    # ---- writes ---------------------------------------------------------------------------------
    def bulk(self, actions: Iterable[dict[str, Any]], paths: dict[str, str],
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

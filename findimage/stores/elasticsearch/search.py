"""The Elasticsearch store's searches: kNN with exact re-ranking, the path-word and image-text sides of
fusion, each ranking of a text query in one `_msearch`."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from elasticsearch import NotFoundError

from findimage.config import ElasticsearchSettings
from findimage.errors import BackendUnavailable, IndexMissing, StoreError
from findimage.query import EVERYWHERE, Filters
from findimage.records import Match
from findimage.stores.elasticsearch.client import BUSY_STATUSES, unavailable_on_connection_errors
from findimage.stores.elasticsearch.query import (
    exact_top,
    filter_clauses,
    hit_lines,
    knn_body,
    matches,
    names_body,
    source_lines,
    text_body,
)
from findimage.stores.elasticsearch.view import AliasView
from findimage.stores.text import one_line_first, query

log = logging.getLogger(__name__)


class Searches:
    def __init__(self, view: AliasView, settings: ElasticsearchSettings):
        self.view = view
        self.settings = settings  # how deep a kNN search looks (FINDIMAGE_ES_RESCORE_OVERSAMPLE, _NUM_CANDIDATES)

    @property
    def oversample(self) -> float:  # kNN candidates per result, re-ranked by exact cosine (1: none)
        return self.settings.es_rescore_oversample

    @property
    def url(self) -> str | None:  # named in connection errors (unavailable_on_connection_errors)
        return self.view.url

    @unavailable_on_connection_errors
    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            filters: Filters = EVERYWHERE) -> list[Match]:
        self.view.fresh()
        vector = np.asarray(vector, dtype=float)
        self.view.check_dims(vector)
        body = knn_body(vector, k, num_candidates, filter_clauses(filters), self.settings)
        for attempt in range(3):
            try:
                found = self.view.client.search(index=self.view.alias, body=body)
            except NotFoundError:  # not created yet, or the alias moved on while this search was routed
                if self.view.indices.missing():
                    raise IndexMissing(f"The Elasticsearch index {self.view.alias} does not exist yet: run "
                                       "`findimage index` (or check FINDIMAGE_INDEX).") from None
                if attempt == 2:
                    raise
                continue
            if not found["_shards"].get("failed") or attempt == 2:
                break
            log.info("kNN search had shard failures (%s); retrying", found["_shards"].get("failures"))
        hits = found["hits"]["hits"]
        self.view.notice_index(hits)
        return exact_top(hits, k, self.oversample)

    @unavailable_on_connection_errors
    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match]]:
        """The CLIP and the path-word (BM25) rankings in one `_msearch`, both under the same filters."""
        by_image, by_name, _ = self._rankings(vector, words, k, num_candidates, filters, False)
        return by_image, by_name

    @unavailable_on_connection_errors
    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match], list[Match]]:
        """`hybrid` and `text_ranking`'s candidates in one `_msearch` (a text query stays one search request),
        every candidate with its text's lines (store.Store.hybrid_with_text)."""
        return self._rankings(vector, words, k, num_candidates, filters, True)

    def _rankings(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None,
                  filters: Filters, with_text: bool) -> tuple[list[Match], list[Match], list[Match]]:
        self.view.fresh()
        vector = np.asarray(vector, dtype=float)
        self.view.check_dims(vector)
        filter_ = filter_clauses(filters)
        searches = [{"index": self.view.alias},
                    knn_body(vector, k, num_candidates, filter_, self.settings, with_text),
                    {"index": self.view.alias}, names_body(vector, words, k, filter_, with_text)]
        text_words = query(words) if with_text and k > 0 else []
        if text_words:
            searches += [{"index": self.view.alias}, text_body(vector, text_words, k, filter_)]
        for attempt in range(3):
            responses = self.view.client.msearch(searches=searches)["responses"]
            # A busy or recovering cluster (all shards failed, 503/429) gets two more tries before the
            # user is told to come back in a minute: a search costs milliseconds, a lost answer a retype.
            busy = [r for r in responses if "error" in r and r.get("status") in BUSY_STATUSES]
            if not busy or attempt == 2:
                break
            log.info("search answered %s (%s); retrying", busy[0].get("status"), busy[0]["error"].get("type"))
            time.sleep(0.25 * (attempt + 1))
        for response in responses:
            if "error" in response:
                self._raise_search_error(response, vector)
        image_hits, name_hits = responses[0]["hits"]["hits"], responses[1]["hits"]["hits"]
        self.view.notice_index(image_hits)
        if not with_text:
            return exact_top(image_hits, k, self.oversample), matches(name_hits, "clip", ("name",)), []
        # Every candidate with its text's lines, for findimage.fusion to judge; the text's candidates in
        # the search's order (every one-line match first already), their snippets the fusion's.
        text_hits = responses[2]["hits"]["hits"] if text_words else []
        lines = self._lines(text_hits, [*image_hits, *name_hits])
        return (exact_top(image_hits, k, self.oversample, lines), matches(name_hits, "clip", ("name",), lines),
                matches(text_hits, "clip", ("text",), lines))

    def _raise_search_error(self, response: dict, vector: np.ndarray) -> None:
        error = response["error"]
        if response.get("status") == 400:  # a rebuild may have swapped in vectors of another size meanwhile
            self.view.forget_meta()
            self.view.check_dims(vector)
        if response.get("status") == 404 and self.view.indices.missing():
            raise IndexMissing(f"The Elasticsearch index {self.view.alias} does not exist yet: run "
                               "`findimage index` (or check FINDIMAGE_INDEX).")
        if response.get("status") in BUSY_STATUSES:
            raise BackendUnavailable(f"Elasticsearch at {self.view.url} cannot search now ({error.get('type')}); "
                                     "try again in a minute.")
        raise StoreError(f"Elasticsearch refused the search: {error.get('reason') or error.get('type')}.")

    @unavailable_on_connection_errors
    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int,
                     filters: Filters = EVERYWHERE) -> list[Match]:
        """One search: the k best by BM25 on the text words, those with every query word in one line first
        (text_body); the hits' lines give the snippets."""
        wanted = query(words)
        if not wanted or k <= 0:
            return []
        self.view.fresh()
        vector = np.asarray(vector, dtype=float)
        self.view.check_dims(vector)
        body = text_body(vector, wanted, k, filter_clauses(filters))
        try:
            found = self.view.client.search(index=self.view.alias, body=body)
        except NotFoundError:
            if self.view.indices.missing():
                raise IndexMissing(f"The Elasticsearch index {self.view.alias} does not exist yet: run "
                                   "`findimage index` (or check FINDIMAGE_INDEX).") from None
            raise
        hits = found["hits"]["hits"]
        self.view.notice_index(hits)
        return self._text_matches(hits, wanted, k, self._lines(hits))

    def _text_matches(self, hits: list[dict], words: Sequence[str], k: int,
                      lines: dict[str, list[str]]) -> list[Match]:
        """A text_body answer's matches with their snippets. Elasticsearch put every one-line match first
        already; the lines confirm it (a reading stored before text_words held one value per line has its
        lines joined, so the query may have taken words of neighbouring lines for one line)."""
        return one_line_first(((match, lines.get(match.image_id, [])) for match in matches(hits, "clip")), words, k)

    def _lines(self, text_hits: list[dict], other_hits: Sequence[dict] = ()) -> dict[str, list[str]]:
        """The lines' text of these hits' readings (fetched with LINES_DOC_VALUES) by image id, from doc
        values. A text_body hit without them holds a reading stored before text_lines_text was kept (a
        development version's, before any release with text): its lines from _source, in one mget."""
        found: dict[str, list[str]] = {}
        for hit in [*text_hits, *other_hits]:
            lines = hit_lines(hit)
            if lines is not None:
                found[hit["fields"]["image_id"][0]] = lines  # text_body's hits come without _id
        older = {hit["fields"]["image_id"][0]: hit["_index"] for hit in text_hits
                 if hit["fields"]["image_id"][0] not in found}
        if older:
            docs = self.view.client.mget(docs=[{"_index": index, "_id": i} for i, index in older.items()],
                                         source_includes=["text_lines.text"])["docs"]
            found.update((d["_id"], source_lines(d.get("_source") or {})) for d in docs if d.get("found"))
        return found

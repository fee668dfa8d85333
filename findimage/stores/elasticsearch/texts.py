"""The Elasticsearch store's text side: readings written onto documents (only while they hold the
content read), kept across upserts of the same content, reused by content, and what is still unread."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from elasticsearch import NotFoundError

from findimage.records import FileState, ImageDoc, ReadText
from findimage.stores.elasticsearch.client import unavailable_on_connection_errors
from findimage.stores.elasticsearch.query import STATE_FIELDS, TEXT_FIELDS, file_state, lines_value
from findimage.stores.elasticsearch.view import AliasView
from findimage.stores.text import DONE, checked, from_json, lines_json, lines_words

# A reading is written onto the document only while it holds the content the text was read from.
SET_TEXT_SCRIPT = ("if (ctx._source.sha256 == params.sha256) { ctx._source.putAll(params.text); } "
                   "else { ctx.op = 'noop'; }")


class Texts:
    def __init__(self, view: AliasView):
        self.view = view
        # Whether the index a rebuild writes may hold text yet: only set_texts puts any there (begin_rebuild
        # makes it empty, under a name never used before), so until then no upsert has text to keep.
        self._rebuild_has_texts = False

    def rebuild_began(self) -> None:
        self._rebuild_has_texts = False

    @property
    def url(self) -> str | None:  # named in connection errors (unavailable_on_connection_errors)
        return self.view.url

    def kept(self, docs: Sequence[ImageDoc]) -> dict[str, dict]:
        """The text fields of those documents already stored with the same content, by image id."""
        if self.view.indices.write_index is not None and not self._rebuild_has_texts:
            # A rebuild's new index holds no text before set_texts writes some: looking it up would cost the
            # server a read per document (a quarter of its bulk time) to find nothing.
            return {}
        sha256s = {d.image_id: d.sha256 for d in docs}
        kept: dict[str, dict] = {}
        ids = list(sha256s)
        for start in range(0, len(ids), 1000):
            found = self.view.client.mget(index=self.view.indices.target, ids=ids[start:start + 1000],
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
        self.view.indices.ensure()
        self._rebuild_has_texts = self.view.indices.write_index is not None
        actions = ({"_op_type": "update", "_index": self.view.indices.target, "_id": image_id, "retry_on_conflict": 3,
                    "script": {"source": SET_TEXT_SCRIPT, "lang": "painless",
                               "params": {"sha256": sha256, "text": text_source(sha256, checked(read))}}}
                   for image_id, sha256, read in items)
        self.view.bulk(actions, {}, ignore_status=(404,))

    @unavailable_on_connection_errors
    def texts_by_sha256(self, sha256s: Iterable[str]) -> dict[str, ReadText]:
        """From the live index (during a rebuild too: the readings the new index reuses)."""
        self.view.fresh()
        wanted, found = sorted(set(sha256s)), {}
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            # A content's reading kept for good scores above one that timed out: collapse keeps the best.
            query = {"bool": {"filter": [{"terms": {"text_sha256": chunk}}],
                              "should": [{"terms": {"text_state": list(DONE)}}]}}
            try:
                result = self.view.client.search(index=self.view.alias, query=query, size=len(chunk),
                                                 source={"includes": TEXT_FIELDS}, collapse={"field": "text_sha256"})
            except NotFoundError:  # not created yet: nothing to reuse
                return {}
            for hit in result["hits"]["hits"]:
                s = hit["_source"]
                found[s["text_sha256"]] = from_json(s.get("text_state", ""), s.get("text_reason") or "",
                                                    s.get("text_lines"), s.get("text_attempts"))
        return found

    def _refreshed_target(self) -> str | None:
        """The index being written (the alias unless rebuilding), refreshed; None while there is none."""
        target = self.view.indices.target
        return target if self.view.refresh(target) else None

    @unavailable_on_connection_errors
    def text_pending(self, limit: int) -> list[FileState]:
        """Of the index being written (during a rebuild, the new one), by path. A document holds a reading
        only of its current content (upsert and set_texts see to it), so "no reading kept for good" (none,
        or one that timed out) is the test."""
        target = self._refreshed_target()
        found: list[FileState] = []
        after: list | None = None
        while target is not None and len(found) < limit:
            size = min(limit - len(found), 5000)
            hits = self.view.client.search(
                index=target, query={"bool": {"must_not": [{"terms": {"text_state": list(DONE)}}]}},
                sort=[{"relative_path": "asc"}], size=size, source=False, search_after=after,
                docvalue_fields=[{"field": f} for f in STATE_FIELDS], track_total_hits=False)["hits"]["hits"]
            found += [file_state({f: h["fields"].get(f, [None])[0] for f in STATE_FIELDS}) for h in hits]
            if len(hits) < size:
                break
            after = hits[-1]["sort"]
        return found

    @unavailable_on_connection_errors
    def text_status(self) -> tuple[int, int]:
        """(documents with a reading kept for good, all documents) of the index being written."""
        target = self._refreshed_target()
        if target is None:
            return 0, 0
        found = self.view.client.search(index=target, size=0, track_total_hits=True,
                                        aggs={"read": {"filter": {"terms": {"text_state": list(DONE)}}}})
        return int(found["aggregations"]["read"]["doc_count"]), int(found["hits"]["total"]["value"])


def text_source(sha256: str, read: ReadText) -> dict:
    return {"text_sha256": sha256, "text_state": read.state, "text_reason": read.reason, "text_attempts": read.attempts,
            "text_lines": lines_json(read.lines), "text_lines_text": lines_value([line.text for line in read.lines]),
            "text_words": lines_words(read)}

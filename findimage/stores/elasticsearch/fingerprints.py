"""The Elasticsearch store's picture fingerprints: written onto documents (upserted with them, or added to
documents indexed before they were kept, only while they hold the content the fingerprint was made from),
the documents still without one, near-copy candidates by the probes' keys, and every fingerprint for the
duplicates report, all read from doc values (the _source holds the vector)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from elasticsearch import NotFoundError, helpers

from findimage.duplicates import confirmed
from findimage.fingerprint import Fingerprint
from findimage.query import EVERYWHERE, Filters
from findimage.records import FileState, Match
from findimage.stores.elasticsearch.client import unavailable_on_connection_errors
from findimage.stores.elasticsearch.query import (
    FINGERPRINT_FIELDS,
    STATE_FIELDS,
    file_state,
    filter_clauses,
    fingerprint_source,
)
from findimage.stores.elasticsearch.view import AliasView

# A fingerprint is written onto the document only while it holds the content it was made from.
SET_FINGERPRINT_SCRIPT = ("if (ctx._source.sha256 == params.sha256) { ctx._source.putAll(params.fields); } "
                          "else { ctx.op = 'noop'; }")
MOST_CANDIDATES = 1000  # documents a near-copy lookup compares at most (each probe names a key of 24 bits)


class Fingerprints:
    def __init__(self, view: AliasView):
        self.view = view

    @property
    def url(self) -> str | None:  # named in connection errors (unavailable_on_connection_errors)
        return self.view.url

    @unavailable_on_connection_errors
    def set_fingerprints(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Partial updates of the index being written, each applied only while the document holds the
        content its fingerprint was made from; documents gone are skipped."""
        self.view.indices.ensure()
        actions = ({"_op_type": "update", "_index": self.view.indices.target, "_id": image_id, "retry_on_conflict": 3,
                    "script": {"source": SET_FINGERPRINT_SCRIPT, "lang": "painless",
                               "params": {"sha256": sha256, "fields": fingerprint_source(text)}}}
                   for image_id, sha256, text in items)
        self.view.bulk(actions, {}, ignore_status=(404,))

    @unavailable_on_connection_errors
    def fingerprint_pending(self) -> list[FileState]:
        """Of the index being written (during a rebuild, the new one), by path."""
        target = self.view.indices.target
        if not self.view.refresh(target):
            return []
        hits = self._scan(target, {"bool": {"must_not": [{"exists": {"field": "fingerprint_keys"}}]}}, STATE_FIELDS)
        return sorted((file_state(_values(h, STATE_FIELDS)) for h in hits), key=lambda s: s.relative_path)

    @unavailable_on_connection_errors
    def near_copies(self, fingerprint: Fingerprint, filters: Filters = EVERYWHERE) -> list[Match]:
        self.view.fresh()
        query = {"bool": {"filter": [{"terms": {"fingerprint_keys": list(fingerprint.probes())}},
                                     *filter_clauses(filters)]}}
        try:
            hits = self.view.client.search(index=self.view.alias, query=query, size=MOST_CANDIDATES, source=False,
                                           docvalue_fields=FINGERPRINT_FIELDS, track_total_hits=False,
                                           sort=[{"relative_path": "asc"}])["hits"]["hits"]
        except NotFoundError:  # not created yet: no copies
            return []
        return confirmed(fingerprint, (_candidate(h) for h in hits), filters)

    @unavailable_on_connection_errors
    def fingerprints(self, folder: str | None = None) -> list[tuple[FileState, str]]:
        if not self.view.refresh(self.view.alias):
            return []
        clauses: list[dict] = [{"exists": {"field": "fingerprint_keys"}}]
        if folder is not None:
            clauses.append({"prefix": {"relative_path": folder + "/"}})
        found = [(state, text) for state, _, _, text in map(_candidate, self._scan(
            self.view.alias, {"bool": {"filter": clauses}}, FINGERPRINT_FIELDS))]
        return sorted(found, key=lambda item: item[0].relative_path)

    @unavailable_on_connection_errors
    def fingerprints_of(self, image_ids: Iterable[str]) -> dict[str, str]:
        wanted, found = sorted(set(image_ids)), {}
        if not wanted:
            return {}
        self.view.fresh()
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            try:
                hits = self.view.client.search(index=self.view.alias, query={"terms": {"image_id": chunk}},
                                               size=len(chunk), source=False, track_total_hits=False,
                                               docvalue_fields=[{"field": "image_id"}, {"field": "fingerprint"}]
                                               )["hits"]["hits"]
            except NotFoundError:
                return {}
            for hit in hits:
                fields = hit.get("fields", {})
                if fields.get("fingerprint"):
                    found[fields["image_id"][0]] = fields["fingerprint"][0]
        return found

    def _scan(self, index: str, query: dict, fields: list[Any]) -> Iterable[dict]:
        return helpers.scan(self.view.client, index=index, size=5000,
                            query={"query": query, "_source": False, "docvalue_fields": fields})


def _values(hit: dict, names: Iterable[str]) -> dict[str, Any]:
    fields = hit.get("fields", {})
    return {name: fields.get(name, [None])[0] for name in names}


def _candidate(hit: dict) -> tuple[FileState, str, str | None, str]:
    values = _values(hit, [*STATE_FIELDS, "image_name", "taken", "fingerprint"])
    return file_state(values), values["image_name"], values["taken"], values["fingerprint"]

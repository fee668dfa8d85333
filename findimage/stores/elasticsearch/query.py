"""Elasticsearch request bodies and hit parsing: the kNN search, the path-word and the image-text (BM25)
searches, filters.

Text queries send both searches in one `_msearch` and fuse the rankings client-side (findimage.fusion):
Elasticsearch's own RRF needs a paid license, this works on basic.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from findimage.config import ElasticsearchSettings
from findimage.fingerprint import Fingerprint
from findimage.query import Filters
from findimage.records import FileState, Match
from findimage.stores.base import candidates_for

MATCH_FIELDS = ["image_id", "image_name", "relative_path", "sha256", "taken", "taken_source", "size", "mtime"]
# A hit's fields from doc values (all keyword or date): the stored _source, which holds the 512-float
# vector as JSON (~10 kB), is then never loaded and parsed to answer a query.
MATCH_DOC_VALUES: list[Any] = [*(f for f in MATCH_FIELDS if f != "taken"),
                               {"field": "taken", "format": "strict_date_hour_minute_second"},
                               "fingerprint"]  # near copies collapse without a second request
FETCH = {"_source": False, "docvalue_fields": MATCH_DOC_VALUES}
# ...and a hit's text as read (text_lines_text), for a text query's fusion to judge every candidate on it.
LINES_DOC_VALUES = ["text_lines_text"]

# Fields added after the first release: new indices get them from the mapping, older ones through
# put_mapping when the indexer opens them (adding fields never needs a reindex).
NEW_FIELDS: dict[str, dict[str, Any]] = {
    # findimage.names already lowercases and strips accents on both sides, so the standard analyzer
    # (standard tokenizer + lowercase) sees what asciifolding would leave, and an existing index can
    # take the field without being closed to define an analyzer.
    "name_words": {"type": "text", "analyzer": "standard"},
    "taken": {"type": "date", "format": "strict_date_hour_minute_second||strict_date_optional_time"},
    "taken_source": {"type": "keyword"},
    # Text read from the image (findimage.stores.text): every line's folded words, searched like
    # name_words; the lines as read with boxes and confidences, only kept in _source; the lines' text alone
    # in doc values (lines_value), where a text query reads its snippets without loading stored fields; the
    # reading's state, reason and attempts (a reading stored before attempts were kept was one), and the
    # content it was read from.
    "text_words": {"type": "text", "analyzer": "standard"},
    "text_lines": {"type": "object", "enabled": False},
    "text_lines_text": {"type": "binary", "doc_values": True},
    "text_state": {"type": "keyword"},
    "text_reason": {"type": "keyword", "ignore_above": 1024},
    "text_sha256": {"type": "keyword"},
    "text_attempts": {"type": "integer", "index": False},
    # The picture's fingerprint (findimage.fingerprint's string: read from doc values, never searched) and
    # its lookup keys (a near-copy lookup asks for its probes with a terms query).
    "fingerprint": {"type": "keyword", "index": False},
    "fingerprint_keys": {"type": "long"},
}
TEXT_FIELDS = ["text_words", "text_lines", "text_lines_text", "text_state", "text_reason", "text_sha256",
               "text_attempts"]
# text_words holds one value per line: Lucene leaves this many positions between values (the text field
# default), so query words at most LINE_GAP - 1 positions apart stand in one line. BM25 counts only the
# words, as for one joined string.
LINE_GAP = 100
# Lucene's BM25 gives each query term less than its IDF, under 23 for a shard's at most 2^31 documents; an
# analyzed word has at most one term per character. A boost of 32 per character for a match with every
# word in one line thus lifts it above every other match, with BM25 deciding within each group.
ONE_LINE_BOOST_PER_CHAR = 32

# The CLIP score of a hit found by name, on the kNN scale ((1 + cos) / 2). Painless, so basic licenses run it;
# the query vector is sent normalised, the stored one is divided by its magnitude.
_COSINE = ("float[] v = doc['image_embedding'].vectorValue; double dot = 0; "
           "for (int i = 0; i < v.length; i++) { dot += v[i] * params.q[i]; } ")
COSINE_SCRIPT = _COSINE + "return (1.0 + dot / doc['image_embedding'].magnitude) / 2.0;"


def filter_clauses(filters: Filters) -> list[dict]:
    found: list[dict] = []
    if filters.folder is not None:
        found.append({"prefix": {"relative_path": filters.folder + "/"}})
    dates = {op: value for op, value in (("gte", filters.after), ("lt", filters.before)) if value is not None}
    if dates:
        found.append({"range": {"taken": dates}})
    return found


def knn_body(vector: np.ndarray, k: int, num_candidates: int | None, filter_: list[dict],
             settings: ElasticsearchSettings, lines: bool = False) -> dict:
    """The kNN search. With FINDIMAGE_ES_RESCORE_OVERSAMPLE > 1 it asks for that many times k candidates,
    each with its exact cosine from the stored float vectors (script field `clip`), for `exact_top` to
    re-rank: int8_hnsw ranks by 8-bit codes, which miss about one true neighbour in eight at 100k documents.
    The HNSW search keeps at least FINDIMAGE_ES_NUM_CANDIDATES: the true neighbours it never reaches, no
    re-ranking can bring back. `lines`: each hit with its text's lines (LINES_DOC_VALUES)."""
    oversample, min_candidates = settings.es_rescore_oversample, settings.es_num_candidates
    wanted = min(10_000, math.ceil(k * max(1.0, oversample)))
    knn = {"field": "image_embedding", "query_vector": np.asarray(vector, dtype=float).tolist(), "k": wanted,
           "num_candidates": min(10_000, max(wanted, min_candidates, candidates_for(k, num_candidates)))}
    if filter_:
        knn["filter"] = filter_
    body = {"knn": knn, "size": wanted, **_fetch(lines)}
    if oversample > 1:
        body.update(_with_clip(body, vector))
    return body


def clip_runtime(vector: np.ndarray) -> dict:
    """Each hit's exact CLIP score (`clip`) for the query vector as a runtime field (`runtime_mappings`),
    read like a doc value: unlike a script field it does not make Elasticsearch load each hit's stored
    fields, whose compressed blocks hold the _source with the vector (~65 us a hit at 100k documents: 10 ms
    for a text query's 150 kNN candidates)."""
    script = _COSINE + "emit((1.0 + dot / doc['image_embedding'].magnitude) / 2.0);"
    return {"clip": {"type": "double", "script": {"source": script, "params": {"q": _unit(vector)}}}}


def _with_clip(body: dict, vector: np.ndarray) -> dict:
    """What a body adds to have its hits carry `clip` from doc values and nothing from stored fields
    (their image_id and every other field come from doc values: a hit needs no _id)."""
    return {"runtime_mappings": clip_runtime(vector), "docvalue_fields": [*body["docvalue_fields"], "clip"],
            "stored_fields": "_none_"}


def _unit(vector: np.ndarray) -> list[float]:
    unit = np.asarray(vector, dtype=float)
    return (unit / (np.linalg.norm(unit) or 1.0)).tolist()


def exact_top(hits: list[dict], k: int, oversample: float,
              lines: Mapping[str, Sequence[str]] | None = None) -> list[Match]:
    """The k best of an oversampled kNN answer by exact cosine (ties by path, so the order is stable);
    `lines`: their text's lines by image id."""
    if oversample <= 1:
        return matches(hits, lines=lines)[:k]
    ranked = sorted(matches(hits, "clip", lines=lines), key=lambda m: (-m.score, m.relative_path))
    return ranked[:k]


def _fetch(lines: bool) -> dict:
    return {**FETCH, "docvalue_fields": [*MATCH_DOC_VALUES, *LINES_DOC_VALUES]} if lines else FETCH


def names_body(vector: np.ndarray, words: Sequence[str], k: int, filter_: list[dict], lines: bool = False) -> dict:
    """The path-word (BM25) search: the k best, each with its CLIP score. Ranked by score alone, equal
    scores in index order (as the embedded store's FTS5 ranks): a second sort key, or a total count, would
    make Elasticsearch score and sort every path holding a word that tens of thousands hold (6 ms at 100k
    documents, 3 without). Which of equally named pictures rank first is CLIP's to say (findimage.fusion)."""
    body = {
        "query": {"bool": {"must": [{"match": {"name_words": {"query": " ".join(words), "operator": "or"}}}],
                           "filter": filter_}},
        "size": min(k, 10_000), **_fetch(lines), "track_total_hits": False,
    }
    return {**body, **_with_clip(body, vector)}


def text_body(vector: np.ndarray, words: Sequence[str], k: int, filter_: list[dict]) -> dict:
    """The BM25 search on the text read from the images: the k best, those with every query word in one
    line first (over every match, as on the embedded store), each with its CLIP score and its lines' text
    (the snippet), all from doc values: no stored field is loaded. Ranked by score alone (equal scores in
    index order, as the embedded store keeps slot order) and without a total count, so Elasticsearch may
    skip the matches that cannot reach the top k instead of scoring and sorting every one."""
    match = " ".join(words)
    one_line = [] if len(words) < 2 else [{"constant_score": {
        "filter": {"intervals": {"text_words": {"match": {"query": match, "max_gaps": LINE_GAP - 1,
                                                          "ordered": False}}}},
        "boost": float(ONE_LINE_BOOST_PER_CHAR * len(match))}}]
    body = {
        "query": {"bool": {"must": [{"match": {"text_words": {"query": match, "operator": "or"}}}],
                           "should": one_line, "filter": filter_}},
        "size": min(k, 10_000), **_fetch(lines=True), "track_total_hits": False,
    }
    return {**body, **_with_clip(body, vector)}


def lines_value(lines: Sequence[str]) -> str:
    """The lines' text as text_lines_text holds it: a JSON list, base64 as binary fields are given."""
    return base64.b64encode(json.dumps(list(lines), ensure_ascii=False).encode()).decode()


def hit_lines(hit: dict) -> list[str] | None:
    """The lines' text of a hit fetched with LINES_DOC_VALUES; None without a reading, or for one stored
    before text_lines_text was kept (its lines only in _source)."""
    value = hit.get("fields", {}).get("text_lines_text")
    return None if not value else [str(line) for line in json.loads(base64.b64decode(value[0]))]


def source_lines(source: dict) -> list[str]:
    """The lines' text from a document's _source (text_lines)."""
    lines = source.get("text_lines") or []
    return [str(line.get("text", "")) for line in (lines if isinstance(lines, list) else [lines])]


def matches(hits: list[dict], score_field: str | None = None, matched: tuple[str, ...] = ("image",),
            lines: Mapping[str, Sequence[str]] | None = None) -> list[Match]:
    """The hits as matches, marked `matched`; `lines`: their text's lines by image id."""
    found = []
    for h in hits:
        fields: dict[str, list[Any]] = h["fields"]

        def value(name: str, default: Any = None, fields: dict[str, list[Any]] = fields) -> Any:
            return fields.get(name, [default])[0]

        score = float(value(score_field)) if score_field else float(h["_score"])
        found.append(Match(value("image_id"), value("image_name"), value("relative_path"), score,
                           value("sha256", ""), value("taken"), value("taken_source") or "",
                           size=value("size"), mtime=value("mtime"), matched=matched,
                           text_lines=tuple(lines.get(value("image_id"), ())) if lines else (),
                           fingerprint=value("fingerprint", "")))
    return found


# What a pass needs to know of each stored document (docvalue-readable keyword and numeric fields).
STATE_FIELDS = ["image_id", "relative_path", "sha256", "size", "mtime", "model_id", "taken_source"]


# A near-copy candidate's and the duplicates report's fields, from doc values.
FINGERPRINT_FIELDS: list[Any] = [*STATE_FIELDS, "image_name", "fingerprint",
                                 {"field": "taken", "format": "strict_date_hour_minute_second"}]


def fingerprint_source(fingerprint: str) -> dict:
    """A document's fingerprint fields ({} for none)."""
    if not fingerprint:
        return {}
    return {"fingerprint": fingerprint, "fingerprint_keys": list(Fingerprint.from_string(fingerprint).keys())}


def file_state(s: dict[str, Any]) -> FileState:
    """The STATE_FIELDS of a document's source (or its doc values)."""
    return FileState(s["image_id"], s["relative_path"], s["sha256"], s["size"], s["mtime"], s["model_id"],
                     s.get("taken_source") or "")

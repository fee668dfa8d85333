"""The embedded store's searches: kNN (filters inside, exact re-ranking from SQLite), the path-word side
of fusion and the ranking by text read from the images, over the kNN cache (knn_cache.KnnCache):
everything here runs under its lock, on its connection. The SQL they ask is here too, below the class:
the filters as a WHERE clause, FTS5's match expressions, the path-word and the image-text rankings.
"""
from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np

from findimage.errors import check_vector_size
from findimage.query import EVERYWHERE, Filters
from findimage.records import Match, cosine_to_score
from findimage.stores.base import candidates_for
from findimage.stores.embedded.knn_cache import KnnCache
from findimage.stores.embedded.schema import LINE_SLOTS, in_chunks, vectors_of
from findimage.stores.embedded.texts import lines_as_read
from findimage.stores.text import one_line_first, query

# Folders with at most this many images are searched exactly from SQLite instead of through the ANN index.
EXACT_FOLDER_MAX = 20_000
# Query words held by more path words than this are ranked by CLIP among the documents that hold them
# (EmbeddedSearch._best_looking_named) instead of by FTS5's BM25, which costs ~1 us per matching document.
BM25_MAX_DOCUMENTS = 2_000
NAMED_AMONG_CANDIDATES = 10  # ...when CLIP's candidates hold at least this many of them (or k)

Signals = tuple[str, ...]  # Match.matched: which searches found a match
IMAGE: Signals = ("image",)
NAME: Signals = ("name",)
TEXT: Signals = ("text",)

# image_id, image_name, relative_path, sha256, taken, taken_source, size, mtime, lines, fingerprint: what _matches reads
_MatchRow = tuple[str, str, str, str, str | None, str | None, int | None, float | None, str | None, str | None]


class EmbeddedSearch:
    def __init__(self, cache: KnnCache):
        self.cache = cache

    def _query(self, vector: np.ndarray) -> np.ndarray:
        """A query vector, refused in one sentence unless it has the size of the stored ones."""
        query = np.asarray(vector, dtype=np.float32).ravel()
        with self.cache.lock:
            index = self.cache.fresh()
            check_vector_size(index.dims if len(index) else None, query.size)
        return query

    def knn(self, vector: np.ndarray, k: int, num_candidates: int | None = None,
            filters: Filters = EVERYWHERE) -> list[Match]:
        with self.cache.lock:
            return self._knn(vector, k, num_candidates, filters)

    def hybrid(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
               filters: Filters = EVERYWHERE, lines: bool = False) -> tuple[list[Match], list[Match]]:
        """The CLIP ranking and the path-word ranking, each of up to k, under the same filters; matches
        found by name carry their exact CLIP score too, marked as found by name. `lines`: every match
        with its text's lines."""
        query = self._query(vector)
        with self.cache.lock:
            present = words_present(self.cache.db, words)
            wanted = self._named_candidates(present, k, num_candidates)
            searched = None
            if wanted is not None and not filters.any:
                # One ANN search for both sides: CLIP's candidates are the first of those the name side
                # looks among (the same lists probed, the same order), where a second search costs as much.
                searched = self.cache.fresh().search(query, wanted)
            by_image = self._knn(query, k, num_candidates, filters, searched, lines)
            by_name = None
            if wanted is not None:
                by_name = self._best_looking_named(query, present, wanted, k, filters, searched, lines)
            if by_name is not None:
                return by_image, by_name
            return by_image, self._in_order_given(query, name_ranking(self.cache.db, present, k, filters), NAME, lines)

    def hybrid_with_text(self, vector: np.ndarray, words: Sequence[str], k: int, num_candidates: int | None = None,
                         filters: Filters = EVERYWHERE) -> tuple[list[Match], list[Match], list[Match]]:
        """`hybrid`'s two rankings and the text's candidates (text_candidates below, marked as found by
        text; their order and snippets are findimage.fusion's), every candidate carrying the lines of its
        text: the fusion judges each on every signal."""
        with self.cache.lock:
            by_image, by_name = self.hybrid(vector, words, k, num_candidates, filters, lines=True)
            return by_image, by_name, self._text_candidates(vector, query(words), k, filters, text_candidates)

    def text_ranking(self, vector: np.ndarray, words: Sequence[str], k: int,
                     filters: Filters = EVERYWHERE) -> list[Match]:
        """Documents whose text holds the query words, those with all of them in one line first, then by
        BM25; each with its exact CLIP score and the line that matched best."""
        wanted = query(words)
        found = self._text_candidates(vector, wanted, k, filters, text_ranking)
        return one_line_first(((m, m.text_lines) for m in found), wanted, k)

    def _text_candidates(self, vector: np.ndarray, wanted: Sequence[str], k: int, filters: Filters,
                         slots_of: Callable[[sqlite3.Connection, Sequence[str], int, Filters], list[int]]
                         ) -> list[Match]:
        """The matches of the slots `slots_of` gives (text_ranking or text_candidates) in its
        order, with their lines, marked as found by text."""
        vector = self._query(vector)
        with self.cache.lock:
            db = self.cache.db
            db.execute("BEGIN")  # slots, vectors and lines from one snapshot
            try:
                return self._in_order_given(vector, slots_of(db, wanted, k, filters), TEXT, lines=True)
            finally:
                db.execute("COMMIT")

    def _named_candidates(self, present: list[str], k: int, num_candidates: int | None) -> int | None:
        """For words that thousands of paths share, how many of CLIP's candidates the name side looks
        among (_best_looking_named); None to rank by BM25.

        BM25 gives such paths near-equal scores (the same words, paths of similar length) at ~1 us per
        matching document, so it would order them by path length. Where they are more than
        BM25_MAX_DOCUMENTS and a share of the archive that puts twice `need` of them among CLIP's
        candidates, those candidates hold plenty of them."""
        candidates_wanted = 4 * candidates_for(k, num_candidates)
        need = min(k, NAMED_AMONG_CANDIDATES)
        enough = max(BM25_MAX_DOCUMENTS + 1, math.ceil(2 * need * len(self.cache.fresh()) / candidates_wanted))
        if documents_holding(self.cache.db, present, enough) < enough:
            return None
        return candidates_wanted

    def _best_looking_named(self, query: np.ndarray, words: list[str], candidates_wanted: int, k: int,
                            filters: Filters, searched: tuple[np.ndarray, np.ndarray] | None,
                            lines: bool) -> list[Match] | None:
        """Among CLIP's `candidates_wanted` candidates (`searched` where the search was made already), those
        whose names hold every word (any, where none holds all), in CLIP's order; None where too few are
        (BM25 then). The list ends where the candidates do; the rest look less like the query than any."""
        index = self.cache.fresh()
        _, candidates = searched if searched is not None else index.search(query, candidates_wanted)
        named = named_among(self.cache.db, candidates.tolist(), words, holds_all(self.cache.db, words))
        if filters.any:
            named = self._passing(np.asarray(named, np.int64), filters).tolist()
        if len(named) < min(k, NAMED_AMONG_CANDIDATES) and len(candidates) < len(index):  # unlucky: BM25 after all
            return None
        return self._exact_among(query, np.asarray(named, np.int64), k, NAME, lines)

    def _knn(self, vector: np.ndarray, k: int, num_candidates: int | None, filters: Filters,
             searched: tuple[np.ndarray, np.ndarray] | None = None, lines: bool = False) -> list[Match]:
        """`searched`: the unfiltered ANN search made already, for at least the candidates needed here;
        `lines`: each match with its text's lines."""
        query = self._query(vector)
        num_candidates = candidates_for(k, num_candidates)
        index = self.cache.fresh()
        if filters.any:
            # Most filters (after:2020, a large folder) keep many images: when k of the unfiltered
            # candidates pass, they are the filtered top k (anything allowed that ranks higher would be
            # among those candidates too), without listing every allowed slot.
            _, candidates = index.search(query, max(num_candidates, 4 * k))
            passing = self._passing(candidates, filters)
            if len(passing) >= k:
                return self._exact_among(query, passing, k, IMAGE, lines)
            # Otherwise the filters go inside the search (exact, or the ANN restricted to these slots):
            # filtering afterwards would lose matches that are not among the unfiltered candidates.
            slots = self._slots_where(filters)
            if len(slots) <= EXACT_FOLDER_MAX:
                return self._exact_among(query, slots, k, IMAGE, lines)
            _, candidates = index.search(query, num_candidates, allowed=slots)
        else:
            sims, candidates = searched if searched is not None else index.search(query, num_candidates)
            sims, candidates = sims[:num_candidates], candidates[:num_candidates]
            if index.kind == "flat":  # already exact
                return self._matches(candidates[:k], sims[:k], IMAGE, lines)
        return self._exact_among(query, candidates, k, IMAGE, lines)

    def _passing(self, slots: np.ndarray, filters: Filters) -> np.ndarray:
        where, params = filter_sql(filters)
        found = []
        for chunk in in_chunks([int(s) for s in slots], 900):
            found += [r[0] for r in self.cache.db.execute(
                f"SELECT slot FROM images WHERE slot IN ({','.join('?' * len(chunk))}) AND {where}",
                [*chunk, *params])]
        return np.asarray(found, dtype=np.int64)

    def _slots_where(self, filters: Filters) -> np.ndarray:
        where, params = filter_sql(filters)
        rows = self.cache.db.execute(f"SELECT slot FROM images WHERE {where}", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _exact_among(self, query: np.ndarray, slots: np.ndarray, k: int, matched: Signals = IMAGE,
                     lines: bool = False) -> list[Match]:
        """Exact cosine re-ranking of candidate slots with the float32 vectors from SQLite."""
        blobs = self._embeddings_of(slots)
        found = np.asarray(sorted(blobs), dtype=np.int64)
        if not len(found):
            return []
        sims = vectors_of([blobs[s] for s in found.tolist()], query.size) @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return self._matches(found[order], sims[order], matched, lines)

    def _in_order_given(self, query: np.ndarray, slots: list[int], matched: Signals = IMAGE,
                        lines: bool = False) -> list[Match]:
        """The slots still stored, in the order given (a BM25 ranking), each with its exact CLIP score."""
        blobs = self._embeddings_of(slots)
        kept = [s for s in slots if s in blobs]
        return self._matches(np.asarray(kept, dtype=np.int64), vectors_of([blobs[s] for s in kept], query.size) @ query,
                             matched, lines)

    def _embeddings_of(self, slots: np.ndarray | list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for chunk in in_chunks([int(s) for s in slots], 900):
            found.update(self.cache.db.execute(
                f"SELECT slot, embedding FROM images WHERE slot IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def _matches(self, slots: np.ndarray, sims: np.ndarray, matched: Signals = IMAGE,
                 lines: bool = False) -> list[Match]:
        """Matches of these slots with these similarities, marked `matched`; with `lines`, each with the
        lines of its text as read; each with its fingerprint ("": none made yet), so that collapsing near
        copies asks nothing more (all from the same query: no second look-up per candidate)."""
        if not len(slots):
            return []
        ids = [int(s) for s in slots]
        text = "texts.lines" if lines else "NULL"
        joined = " LEFT JOIN texts ON texts.slot = images.slot" if lines else ""
        rows = self.cache.db.execute(
            f"SELECT images.slot, image_id, image_name, relative_path, images.sha256, taken, taken_source, size, "
            f"mtime, {text}, fingerprints.fingerprint FROM images{joined} LEFT JOIN fingerprints ON "
            "fingerprints.slot = images.slot AND fingerprints.sha256 = images.sha256 "
            f"WHERE images.slot IN ({','.join('?' * len(ids))})", ids).fetchall()
        by_slot: dict[int, _MatchRow] = {r[0]: r[1:] for r in rows}
        return [Match(*by_slot[s][:3], score=cosine_to_score(sim), sha256=by_slot[s][3], taken=by_slot[s][4],
                      taken_source=by_slot[s][5] or "", size=by_slot[s][6], mtime=by_slot[s][7], matched=matched,
                      text_lines=lines_as_read(by_slot[s][8]), fingerprint=by_slot[s][9] or "")
                for s, sim in zip(ids, sims, strict=True) if s in by_slot]


# ---- the searches' SQL: filters, FTS5 expressions, the path-word and the image-text rankings ----------
def filter_sql(filters: Filters) -> tuple[str, list]:
    """A WHERE clause (or '') and its parameters for the folder and date filters."""
    clauses: list[str] = []
    params: list[str] = []
    if filters.folder is not None:
        # Paths under "a/b" sort between "a/b/" and "a/b0" ('0' follows '/'), so the unique index serves it.
        clauses.append("images.relative_path >= ? AND images.relative_path < ?")
        params += [filters.folder + "/", filters.folder + "0"]
    if filters.after is not None:
        clauses.append("images.taken >= ?")
        params.append(filters.after)
    if filters.before is not None:
        clauses.append("images.taken < ?")
        params.append(filters.before)
    return (" AND ".join(clauses), params)


def match_expression(words: Sequence[str], operator: str = "OR") -> str:
    """FTS5 query: any (or, with "AND", every one) of the words, each quoted so none is read as an operator."""
    return f" {operator} ".join('"' + w.replace('"', '""') + '"' for w in words)


def words_present(db: sqlite3.Connection, words: Sequence[str]) -> list[str]:
    """Those of the words that some document's path words hold, in query order (one look-up each)."""
    return [w for w in words
            if db.execute("SELECT 1 FROM names WHERE names MATCH ? LIMIT 1", (match_expression([w]),)).fetchone()]


def documents_holding(db: sqlite3.Connection, words: Sequence[str], at_most: int) -> int:
    """How many documents' path words hold any of the words, counted up to `at_most`: FTS5 walks the
    matches (~0.1 us each), so a word that 100k paths hold costs no more than `at_most` of them (its term
    statistics, fts5vocab, walk them all: ~1.5 ms a word at 10k)."""
    if not words:
        return 0
    return db.execute("SELECT count(*) FROM (SELECT 1 FROM names WHERE names MATCH ? LIMIT ?)",
                      (match_expression(words), at_most)).fetchone()[0]


def holds_all(db: sqlite3.Connection, words: Sequence[str]) -> bool:
    """Whether any document's path words hold every one of `words`."""
    return db.execute("SELECT 1 FROM names WHERE names MATCH ? LIMIT 1",
                      (match_expression(words, "AND"),)).fetchone() is not None


def named_among(db: sqlite3.Connection, slots: Sequence[int], words: Sequence[str], every: bool) -> list[int]:
    """Those of `slots` (in their order) whose path words hold every word (or any, if not `every`)."""
    if not words:
        return []
    # names_content is FTS5's own table of the indexed text (id = rowid = slot, c0 = the words, space
    # separated): a plain primary-key lookup, where a rowid list on the FTS table itself is answered row by
    # row. The words are tested there too, as substrings of the space-padded words (instr: a third cheaper
    # than LIKE, and no wildcard to escape): only the slots that hold them come back, not 400 paths to split
    # in Python.
    held = (" AND " if every else " OR ").join(["instr(' ' || c0 || ' ', ?) > 0"] * len(words))
    patterns = [f" {word} " for word in words]
    found: set[int] = set()
    for chunk in in_chunks([int(s) for s in slots], 900):
        found.update(r[0] for r in db.execute(
            f"SELECT id FROM names_content WHERE id IN ({','.join('?' * len(chunk))}) AND ({held})",
            [*chunk, *patterns]))
    return [s for s in slots if s in found]


def name_ranking(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose path words match, best BM25 first, within the filters."""
    if not words:
        return []
    where, params = filter_sql(filters)
    if not where:  # FTS5 alone ranks without touching the images table
        rows = db.execute("SELECT rowid FROM names WHERE names MATCH ? ORDER BY rank LIMIT ?",
                          (match_expression(words), limit)).fetchall()
    else:
        rows = db.execute(
            "SELECT names.rowid FROM names JOIN images ON images.slot = names.rowid WHERE names MATCH ? "
            f"AND {where} ORDER BY names.rank LIMIT ?", [match_expression(words), *params, limit]).fetchall()
    return [r[0] for r in rows]


def text_ranking(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose text holds any of the (folded) words within the filters, at most `limit`: those with
    every word in one line first, each group by the document's BM25 (ties by slot), over every match.

    One ranked query: FTS5 ranks every match before the first row (~1 us each on `text_words`, ~2 on
    `text_lines`), so the one-line test is an unranked match on `text_lines` (~0.3 us a row), used as a set."""
    if not words or limit <= 0:
        return []
    one_line: set[int] = set()
    if len(words) > 1:
        one_line = {r[0] for r in db.execute(f"SELECT rowid / {LINE_SLOTS} FROM text_lines WHERE text_lines MATCH ?",
                                             [match_expression(words, "AND")])}
    first: list[int] = []
    rest: list[int] = []
    # Unfiltered, every one-line slot is among the ranked ones: reading can stop once all of them were.
    all_seen = len(one_line) if not filters.any else None
    rows = _ranked(db, match_expression(words), filters)
    try:
        for (slot,) in rows:
            if slot in one_line:
                first.append(slot)
            elif len(rest) < limit:
                rest.append(slot)
            if len(first) >= limit or (len(first) == all_seen and len(first) + len(rest) >= limit):
                break
    finally:
        rows.close()
    return (first + rest)[:limit]


def text_candidates(db: sqlite3.Connection, words: Sequence[str], limit: int, filters: Filters) -> list[int]:
    """Slots whose text holds any of the (folded) words within the filters, at most `limit`, for a text
    query's fusion (findimage.fusion) to judge: those with every word in one line first, then every word
    anywhere, then any, each group in slot order.

    Unranked matches stream (~0.3 us a row) and stop at `limit`; BM25 ranks every match before the first
    row (~1 us each: 3 ms where 3,000 texts hold a word), for an order the fusion does not keep: it ranks
    the candidates by their lines and CLIP."""
    if not words or limit <= 0:
        return []
    where, params = filter_sql(filters)
    groups = [("text_words", words, "OR")]
    if len(words) > 1:
        groups[:0] = [("text_lines", words, "AND"), ("text_words", words, "AND")]
    found: dict[int, None] = {}
    for table, group, operator in groups:
        slot = f"{table}.rowid / {LINE_SLOTS}" if table == "text_lines" else f"{table}.rowid"
        joined = f" JOIN images ON images.slot = {slot} WHERE {table} MATCH ? AND {where}" if where else \
            f" WHERE {table} MATCH ?"
        # Each group holds the ones before: at most `limit` new slots follow the ones found already.
        rows = db.execute(f"SELECT DISTINCT {slot} FROM {table}{joined} LIMIT ?",
                          [match_expression(group, operator), *params, limit + len(found)])
        found.update((row[0], None) for row in rows)
        if len(found) >= limit:
            break
    return list(found)[:limit]


def _ranked(db: sqlite3.Connection, expression: str, filters: Filters) -> sqlite3.Cursor:
    """A cursor over the slots whose text matches `expression`, best BM25 first, ties by slot: read only as
    far as needed (every match is ranked before the first row anyway; fetching them all would add to it).
    A join for the filters only where there are some: ordering through a join costs 10-30 ms at 10k texts."""
    where, params = filter_sql(filters)
    if not where:
        # SQLite's own sort of bm25() here: ~0.2 ms faster at 1,700 matches than FTS5's `ORDER BY rank`.
        return db.execute("SELECT rowid FROM text_words WHERE text_words MATCH ? ORDER BY bm25(text_words), rowid",
                          [expression])
    return db.execute("SELECT text_words.rowid FROM text_words JOIN images ON images.slot = text_words.rowid "
                      f"WHERE text_words MATCH ? AND {where} ORDER BY bm25(text_words), text_words.rowid",
                      [expression, *params])

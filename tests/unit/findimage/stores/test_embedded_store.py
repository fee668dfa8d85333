"""The embedded store across processes: snapshots and crash leftovers (at scale, with its ANN path:
tests/integration/stores/test_embedded_store_at_scale.py)."""
from __future__ import annotations

import time

import pytest
from stored_vectors import clustered, docs

from findimage.query import query_filters
from findimage.records import ImageDoc, image_id_for
from findimage.stores.embedded.store import EmbeddedStore


def test_a_broken_snapshot_is_rebuilt_from_sqlite(tmp_path):
    vectors = clustered(300)
    store = EmbeddedStore(tmp_path)
    store.upsert(docs(vectors))
    store.checkpoint()
    for snapshot in tmp_path.glob("vectors-*.faiss"):
        snapshot.write_bytes(b"garbage left by a crash")
    reopened = EmbeddedStore(tmp_path)
    assert reopened.knn(vectors[7], k=1)[0].relative_path == "bulk/7.jpg"


def test_a_snapshot_pointer_naming_another_path_is_never_read(tmp_path, monkeypatch):
    import json

    import findimage.stores.embedded.vector_index as vector_index

    data = tmp_path / "data"
    vectors = clustered(300)
    store = EmbeddedStore(data)
    store.upsert(docs(vectors))
    store.checkpoint()
    store.close()
    pointer = json.loads((data / "vectors.json").read_text())
    (tmp_path / "planted.faiss").write_bytes((data / pointer["file"]).read_bytes())
    read = []
    real_read = vector_index.faiss.read_index
    monkeypatch.setattr(vector_index.faiss, "read_index", lambda path, *a: read.append(path) or real_read(path, *a))
    for planted in (
        "../planted.faiss", str(tmp_path / "planted.faiss"), "vectors-0123456789ab.faiss/../../planted.faiss"
    ):
        (data / "vectors.json").write_text(json.dumps({**pointer, "file": planted}))
        reopened = EmbeddedStore(data)
        assert reopened.knn(vectors[7], k=1)[0].relative_path == "bulk/7.jpg", "rebuilt from SQLite"
        reopened.close()
    assert not any("planted" in path for path in read)


def test_writes_after_the_snapshot_are_seen_by_a_reader(tmp_path):
    writer = EmbeddedStore(tmp_path)
    writer.upsert(docs(clustered(50)))
    writer.checkpoint()
    reader = EmbeddedStore(tmp_path)
    assert len(reader.knn(clustered(1, 3)[0], k=100)) == 50
    extra = clustered(5, seed=11)
    writer.upsert(docs(extra, prefix="late"))
    writer.delete([image_id_for("bulk/0.jpg")])
    found = reader.knn(extra[0], k=100)
    assert found[0].relative_path == "late/0.jpg" and len(found) == 54
    assert all(m.relative_path != "bulk/0.jpg" for m in found)


def test_documents_and_metadata_answer_while_the_knn_snapshot_loads(tmp_path, monkeypatch):
    """/healthz (count), image links (get) and the indexer's bookkeeping never wait for a snapshot load."""
    import threading

    from findimage.stores.embedded import vector_index as vector_index

    vectors = clustered(500)
    writer = EmbeddedStore(tmp_path)
    writer.upsert(docs(vectors))
    writer.set_meta("last_pass", "{}")
    writer.checkpoint()
    writer.close()

    loading, release = threading.Event(), threading.Event()
    real_load = vector_index.VectorIndex.load.__func__

    def paused_load(cls, folder):
        loading.set()
        release.wait()
        return real_load(cls, folder)

    monkeypatch.setattr(vector_index.VectorIndex, "load", classmethod(paused_load))
    reader = EmbeddedStore(tmp_path)  # a new process's store: its kNN cache is loaded on the first search
    found: list = []
    search = threading.Thread(target=lambda: found.extend(reader.knn(vectors[7], 3)))
    search.start()
    assert loading.wait(60), "the search starts loading the snapshot"

    answered: list = []
    others = threading.Thread(target=lambda: answered.extend(
        [reader.count(), reader.get(image_id_for("bulk/3.jpg")).relative_path, reader.get_meta("last_pass"),
         len(reader.file_states())]))
    others.start()
    others.join(60)
    still_loading = not release.is_set() and search.is_alive()
    release.set()
    search.join(60)

    assert still_loading and answered == [500, "bulk/3.jpg", "{}", 500]
    assert found[0].relative_path == "bulk/7.jpg"


NAMED_PATHS = ["2024-06 Sommerfest/crowd-01.jpg", "2024-06 Sommerfest/crowd-02.jpg", "2024-06 Sommerfest/stage.jpg",
               "2024-06 Sommerfest/a-much-longer-name-of-the-last-photo.jpg", "Messe 2023/Sommerfest-Plakat.jpg",
               "Kunden/Bosch_03.jpg", "misc/tree.jpg", "misc/lake.jpg"]


def named_store(tmp_path):
    vectors = clustered(len(NAMED_PATHS), seed=5)
    store = EmbeddedStore(tmp_path)
    store.upsert([ImageDoc(image_id_for(p), p.rsplit("/", 1)[1], p, v, f"s{i}", 1, 1.0, 1, 1, time.time(), "m")
                  for i, (p, v) in enumerate(zip(NAMED_PATHS, vectors, strict=True))])
    store.checkpoint()
    return store, dict(zip(NAMED_PATHS, vectors, strict=True))


def by_cosine(query, vectors: dict, wanted) -> list[str]:
    """Archive paths among `wanted`, most similar to `query` first, by brute-force cosine."""
    return sorted((p for p in vectors if wanted(p)), key=lambda p: -float(vectors[p] @ query))


def test_words_that_many_names_share_are_ranked_by_clip_among_the_documents_holding_them(tmp_path, monkeypatch):
    from findimage.stores.embedded import search as embedded_search

    store, vectors = named_store(tmp_path)
    query = clustered(1, seed=9)[0]
    bm25 = [m.relative_path for m in store.hybrid(query, ["sommerfest"], 5)[1]]
    monkeypatch.setattr(embedded_search, "BM25_MAX_DOCUMENTS", 1)  # every word is now a common one
    sommerfest = by_cosine(query, vectors, lambda p: "Sommerfest" in p)

    by_name = [m.relative_path for m in store.hybrid(query, ["sommerfest", "unknownword"], 5)[1]]
    assert by_name == sommerfest and bm25 != sommerfest, "CLIP's order, not BM25's (path length)"
    in_folder = store.hybrid(query, ["sommerfest"], 5, filters=query_filters(folder="2024-06 Sommerfest"))[1]
    assert [m.relative_path for m in in_folder] == [p for p in sommerfest if p.startswith("2024-06 ")]
    assert [m.relative_path for m in store.hybrid(query, ["sommerfest"], 2)[1]] == sommerfest[:2]
    # Every word where some names hold them all, any of them where none does.
    assert [m.relative_path for m in store.hybrid(query, ["sommerfest", "plakat"], 5)[1]] == [
        "Messe 2023/Sommerfest-Plakat.jpg"]
    assert [m.relative_path for m in store.hybrid(query, ["stage", "bosch"], 5)[1]] == by_cosine(
        query, vectors, lambda p: "stage" in p or "Bosch" in p)
    scores = {m.relative_path: m.score for m in in_folder}  # the CLIP score, as for any match
    assert scores == pytest.approx({m.relative_path: m.score for m in store.knn(query, 8) if m.relative_path in scores})
    store.close()


def test_a_word_is_looked_for_among_candidates_letter_for_letter(tmp_path):
    """The names of CLIP's candidates are tested in SQLite: a word is found whole, and a character that a
    pattern would read as a wildcard stands for itself (words are letters and digits, but the test must
    not depend on who cut them)."""
    from findimage.stores.embedded.search import named_among

    store, _ = named_store(tmp_path)
    db = store._cache.db
    slots = [r[0] for r in db.execute("SELECT slot FROM images ORDER BY slot")]
    sommerfest = named_among(db, slots, ["sommerfest"], every=True)
    assert sommerfest and len(sommerfest) < len(slots)
    assert named_among(db, slots, ["sommer_est"], every=True) == []
    assert named_among(db, slots, ["sommer%"], every=True) == []
    assert named_among(db, slots, ["sommer"], every=True) == [], "whole words only"
    assert named_among(db, list(reversed(slots)), ["sommerfest"], every=True) == list(reversed(sommerfest))
    assert named_among(db, slots, ["sommerfest", "nowhere"], every=False) == sommerfest
    assert named_among(db, slots, ["sommerfest", "nowhere"], every=True) == []
    store.close()


def segments(db, table: str) -> int:
    return db.execute(f"SELECT count(DISTINCT segid) FROM {table}_idx").fetchone()[0]


def test_a_pass_that_wrote_in_many_pieces_leaves_each_word_index_in_one(tmp_path):
    """Every write is a segment of FTS5's index, and a query walks each word's list in all of them: the
    pass's checkpoint merges them, and what the words find stays the same."""
    from findimage.records import ReadText, TextLine

    store, vectors = named_store(tmp_path)
    db = store._cache.db
    query = clustered(1, seed=9)[0]
    for i in range(12):  # twelve small writes, as a first pass over a large archive makes
        path = f"2025 Sommerfest/extra-{i}.jpg"
        store.upsert([ImageDoc(image_id_for(path), path.rsplit("/", 1)[1], path, clustered(1, seed=20 + i)[0],
                               f"x{i}", 1, 1.0, 1, 1, time.time(), "m")])
        store.set_texts([(image_id_for(path), f"x{i}", ReadText("read", (TextLine(f"Tor {i} offen", (
            (0, 0), (9, 0), (9, 9), (0, 9)), 0.9),)))])
    before = {table: segments(db, table) for table in ("names", "text_words", "text_lines")}
    found_before = store.hybrid_with_text(query, ["sommerfest", "tor"], 20)

    store.checkpoint()

    assert all(count > 4 for count in before.values()), before
    assert {table: segments(db, table) for table in before} == {"names": 1, "text_words": 1, "text_lines": 1}
    assert store.hybrid_with_text(query, ["sommerfest", "tor"], 20) == found_before
    path = "2026 Sommerfest/late.jpg"  # a later small write is left in its own piece: a merge rewrites all
    store.upsert([ImageDoc(image_id_for(path), "late.jpg", path, query, "late", 1, 1.0, 1, 1, time.time(), "m")])
    store.checkpoint()
    assert segments(db, "names") == 2
    store.close()


def test_a_new_store_keeps_a_picture_in_under_3_kb(tmp_path):
    """A 512-float vector and a document's fields take ~2.3 KB: SQLite's default 4 KB pages held one each
    (4.3 KB a picture); 8 KB pages hold three."""
    vectors = clustered(900)
    store = EmbeddedStore(tmp_path)
    store.upsert(docs(vectors[:300]))
    store.checkpoint()
    before = (tmp_path / "findimage.sqlite").stat().st_size
    store.upsert(docs(vectors[300:], start=300))
    store.checkpoint()
    assert ((tmp_path / "findimage.sqlite").stat().st_size - before) / 600 < 3000
    store.close()


def test_a_store_made_with_4_kb_pages_keeps_them_and_every_document(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "findimage.sqlite")
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.close()
    vectors = clustered(50)
    store = EmbeddedStore(tmp_path)
    store.upsert(docs(vectors))
    store.checkpoint()
    assert store._db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert store.knn(vectors[7], k=1)[0].relative_path == "bulk/7.jpg"
    store.close()


def test_the_store_reads_its_database_through_a_memory_map(tmp_path):
    """A search looks up hundreds of random rows; mapped, each costs no system call and no copy."""
    store, _ = named_store(tmp_path)
    assert store._cache.db.execute("PRAGMA mmap_size").fetchone()[0] >= 2**30
    assert store._db.execute("PRAGMA mmap_size").fetchone()[0] >= 2**30
    store.close()

"""Text read from images on Elasticsearch beyond the store contract: an index made before gains the text
fields, and a full rebuild keeps the readings of unchanged content."""
from __future__ import annotations

import logging
import threading
import time

import es_support
import numpy as np
import pytest

from findimage.config import ElasticsearchSettings
from findimage.fusion import fuse
from findimage.records import ImageDoc, ReadText, TextLine, image_id_for
from findimage.stores.elasticsearch.index import mapping
from findimage.stores.elasticsearch.query import NEW_FIELDS, TEXT_FIELDS
from findimage.stores.elasticsearch.store import ElasticsearchStore, _source
from findimage.stores.text import lines_json, search_words

pytestmark = es_support.needs_es


@pytest.fixture
def alias():
    with es_support.scratch_index(prefix="test-texts") as (_, name):
        yield name


def open_store(alias: str, writer: bool = True) -> ElasticsearchStore:
    store = ElasticsearchStore(es_support.client(),
                               ElasticsearchSettings(elasticsearch_url=es_support.ES_URL, index_name=alias),
                               dims=512)  # the image model's size, as the indexer opens it
    if writer:
        store.open_for_writing()
    return store


def doc(path: str, seed: int = 0) -> ImageDoc:
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector / np.linalg.norm(vector),
                    f"sha-{path}", 1, 1.0, 1, 1, time.time(), "m")


def reading(*lines: str) -> ReadText:
    return ReadText("read", tuple(TextLine(text, ((0, 0), (9, 0), (9, 9), (0, 9)), 0.75) for text in lines))


QUERY = doc("query").image_embedding


def test_an_index_made_before_texts_gains_the_fields_and_takes_readings(alias):
    es = es_support.client()
    old = mapping(512, "int8_hnsw")
    for field in TEXT_FIELDS:
        del old["properties"][field]
    es.indices.create(index=f"{alias}-v1", mappings=old, aliases={alias: {}})
    es.index(index=alias, id=image_id_for("a/board.jpg"), refresh=True,
             document=_source(doc("a/board.jpg")))

    reader = open_store(alias, writer=False)  # the bot, before the indexer ran: nothing found, nothing fails
    assert reader.text_ranking(QUERY, ["agenda"], 5) == []
    assert [s.relative_path for s in reader.text_pending(5)] == ["a/board.jpg"]
    assert reader.text_status() == (0, 1)

    writer = open_store(alias)
    known = es.indices.get_mapping(index=f"{alias}-v1")[f"{alias}-v1"]["mappings"]["properties"]
    assert {field: known.get(field) for field in TEXT_FIELDS} == {field: NEW_FIELDS[field] for field in TEXT_FIELDS}
    writer.set_texts([(image_id_for("a/board.jpg"), "sha-a/board.jpg", reading("Agenda", "Größenordnung"))])
    writer.checkpoint()  # the end of the indexer's pass: what it wrote is searchable
    [found] = reader.text_ranking(QUERY, ["grossenordnung"], 5)
    assert (found.relative_path, found.text_snippet) == ("a/board.jpg", "Größenordnung")
    assert reader.text_pending(5) == [] and reader.text_status() == (1, 1)
    assert writer.get(image_id_for("a/board.jpg")).sha256 == "sha-a/board.jpg", "the document itself is intact"


def test_a_reading_stored_before_attempts_were_counted_reads_as_one_attempt(alias):
    es = es_support.client()
    old = mapping(512, "int8_hnsw")
    del old["properties"]["text_attempts"]
    es.indices.create(index=f"{alias}-v1", mappings=old, aliases={alias: {}})
    board = doc("a/board.jpg")
    es.index(index=alias, id=board.image_id, refresh=True, document={
        **_source(board), "text_sha256": board.sha256, "text_state": "failed",
        "text_reason": "reading its text took longer than 120 s", "text_lines": [], "text_words": []})

    store = open_store(alias)  # the indexer adds the field
    known = es.indices.get_mapping(index=f"{alias}-v1")[f"{alias}-v1"]["mappings"]["properties"]
    assert known["text_attempts"] == NEW_FIELDS["text_attempts"]
    assert store.texts_by_sha256([board.sha256]) == {
        board.sha256: ReadText("failed", reason="reading its text took longer than 120 s", attempts=1)}
    assert store.text_pending(5) == [] and store.text_status() == (1, 1), "a failure recorded before stays done"
    store.set_texts([(board.image_id, board.sha256, ReadText("timed_out", reason="slow", attempts=2))])
    assert [s.relative_path for s in store.text_pending(5)] == ["a/board.jpg"] and store.text_status() == (0, 1)


def test_a_full_rebuild_reuses_the_live_readings_and_takes_them_live(alias):
    store = open_store(alias)
    docs = [doc(f"board/{i}.jpg", i) for i in range(3)]
    store.upsert(docs)
    store.set_texts([(d.image_id, d.sha256, reading(f"Sitzung {i}", "Protokoll")) for i, d in enumerate(docs)])
    store.checkpoint()

    store.begin_rebuild()
    store.upsert(docs)  # the new index: documents without their readings yet
    assert [s.relative_path for s in store.text_pending(10)] == [d.relative_path for d in docs], \
        "pending in the index being written"
    assert store.text_status() == (0, 3)
    reused = store.texts_by_sha256([d.sha256 for d in docs])
    assert reused == {d.sha256: reading(f"Sitzung {i}", "Protokoll") for i, d in enumerate(docs)}, \
        "read from the live index"
    store.set_texts([(d.image_id, d.sha256, reused[d.sha256]) for d in docs])
    assert store.text_pending(10) == [] and store.text_status() == (3, 3)
    assert len(store.text_ranking(QUERY, ["protokoll"], 10)) == 3, "searches keep answering from the live index"
    store.finish_rebuild()

    reader = open_store(alias, writer=False)
    found = reader.text_ranking(QUERY, ["sitzung", "1"], 10)
    assert found[0].relative_path == "board/1.jpg" and found[0].text_snippet == "Sitzung 1"
    assert reader.text_pending(10) == [] and reader.text_status() == (3, 3)


def test_upsert_keeps_a_reading_only_for_the_same_content_during_a_rebuild_too(alias):
    store = open_store(alias)
    board = doc("board.jpg")
    store.upsert([board])
    store.set_texts([(board.image_id, board.sha256, reading("Protokoll"))])
    store.begin_rebuild()
    store.upsert([board])
    store.set_texts([(board.image_id, board.sha256, reading("Protokoll"))])
    store.upsert([board])  # written again into the new index: the reading stays
    assert store.text_pending(10) == []
    store.finish_rebuild()
    assert [m.relative_path for m in store.text_ranking(QUERY, ["protokoll"], 5)] == ["board.jpg"]


def test_a_reading_stored_before_its_lines_were_kept_apart_keeps_its_snippet_and_order(alias):
    """Such a reading holds its lines only in _source and its words as one joined value: the search takes
    its two lines for one, the lines fetched from _source put it back behind a true one-line match."""
    store = open_store(alias)
    board, notes = doc("a/board.jpg", 1), doc("a/notes.jpg", 2)
    store.upsert([board, notes])
    store.set_texts([(notes.image_id, notes.sha256, reading("Protokoll der Sitzung vom Montag mit allen Teilnehmern"))])
    older = reading("Protokoll", "Sitzung")
    es_support.client().update(index=alias, id=board.image_id, refresh=True, doc={
        "text_sha256": board.sha256, "text_state": "read", "text_reason": "", "text_words": search_words(older),
        "text_lines": lines_json(older.lines)})
    store.checkpoint()
    found = store.text_ranking(QUERY, ["protokoll", "sitzung"], 5)
    assert [(m.relative_path, m.text_snippet) for m in found] == [
        ("a/notes.jpg", "Protokoll der Sitzung vom Montag mit allen Teilnehmern"), ("a/board.jpg", "Protokoll")]
    fused = fuse(*store.hybrid_with_text(QUERY, ["protokoll", "sitzung"], 5), words=["protokoll", "sitzung"])
    assert [(m.relative_path, m.text_snippet) for m in fused] == [(m.relative_path, m.text_snippet) for m in found]


def test_a_rebuild_looks_up_texts_to_keep_only_once_its_new_index_holds_some(alias, caplog):
    """Before, every upsert of a rebuild asked its new, empty index for texts (one mget per batch)."""
    store = open_store(alias)
    board, notes = doc("board.jpg", 1), doc("notes.jpg", 2)
    store.upsert([board, notes])
    store.set_texts([(board.image_id, board.sha256, reading("Protokoll"))])
    transport = logging.getLogger("elastic_transport.transport")
    transport.setLevel(logging.INFO)
    caplog.set_level(logging.INFO, logger=transport.name)
    me, mark = threading.get_ident(), len(caplog.records)

    def lookups() -> int:
        return sum(1 for r in caplog.records[mark:] if r.name == transport.name and r.thread == me and "/_mget" in
                   r.getMessage())
    try:
        store.upsert([board])
        assert lookups() == 1, "outside a rebuild, every upsert keeps the texts already read"
        store.begin_rebuild()
        store.upsert([board, notes])
        assert lookups() == 1, "the new index is empty: nothing to look up"
        store.set_texts([(board.image_id, board.sha256, reading("Protokoll"))])
        store.upsert([board])
        assert lookups() == 2, "once it holds a reading, upserts keep it"
    finally:
        transport.setLevel(logging.NOTSET)
    assert [s.relative_path for s in store.text_pending(10)] == ["notes.jpg"]
    store.finish_rebuild()
    assert [m.relative_path for m in store.text_ranking(QUERY, ["protokoll"], 5)] == ["board.jpg"]

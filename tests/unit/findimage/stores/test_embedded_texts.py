"""The embedded store's text read from images: a database made before it migrates, and writes are
transactions that leave the kNN cache alone."""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from findimage.records import ImageDoc, ReadText, TextLine, image_id_for
from findimage.stores.embedded.knn_cache import current_version
from findimage.stores.embedded.store import EmbeddedStore


def doc(path: str, seed: int = 0) -> ImageDoc:
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector / np.linalg.norm(vector),
                    f"sha-{path}", 1, 1.0, 1, 1, time.time(), "m")


def reading(*lines: str) -> ReadText:
    return ReadText("read", tuple(TextLine(text, ((0, 0), (9, 0), (9, 9), (0, 9)), 0.8) for text in lines))


def make_old(data_dir, schema: str | None) -> None:
    """The database as the version before text was read left it (schema 2; None: before names too)."""
    db = sqlite3.connect(data_dir / "findimage.sqlite")
    db.executescript("DROP TABLE texts; DROP TABLE text_words; DROP TABLE text_lines;")
    if schema is None:
        db.executescript("DROP INDEX images_taken; DROP TABLE names; ALTER TABLE images DROP COLUMN taken; "
                         "ALTER TABLE images DROP COLUMN taken_source; DELETE FROM meta WHERE key='schema_version';")
    else:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (schema,))
    db.commit()
    db.close()


@pytest.mark.parametrize("schema", ["2", None])
def test_a_database_made_before_texts_opens_migrated_with_every_document_pending(tmp_path, schema):
    store = EmbeddedStore(tmp_path)
    store.upsert([doc("a/Sommerfest.jpg", 1), doc("b/board.jpg", 2)])
    store.close()
    make_old(tmp_path, schema)

    store = EmbeddedStore(tmp_path)
    assert [s.relative_path for s in store.text_pending(10)] == ["a/Sommerfest.jpg", "b/board.jpg"]
    assert store.text_status() == (0, 2)
    store.set_texts([(image_id_for("b/board.jpg"), "sha-b/board.jpg", reading("Quartalszahlen Übersicht"))])
    [found] = store.text_ranking(doc("q", 3).image_embedding, ["ubersicht"], 5)
    assert (found.relative_path, found.text_snippet) == ("b/board.jpg", "Quartalszahlen Übersicht")
    assert [m.relative_path for m in store.hybrid(doc("q", 3).image_embedding, ["sommerfest"], 5)[1]] == [
        "a/Sommerfest.jpg"], "path words are there too"
    store.close()
    assert EmbeddedStore(tmp_path).text_status() == (1, 2), "migrated once: texts stay on the next open"


def test_a_database_migrated_again_keeps_its_texts(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.upsert([doc("b/board.jpg")])
    store.set_texts([(image_id_for("b/board.jpg"), "sha-b/board.jpg", reading("Agenda"))])
    store.close()
    db = sqlite3.connect(tmp_path / "findimage.sqlite")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")  # e.g. opened by an older version
    db.commit()
    db.close()
    store = EmbeddedStore(tmp_path)
    assert [m.relative_path for m in store.text_ranking(doc("q").image_embedding, ["agenda"], 5)] == ["b/board.jpg"]


def test_readings_stored_before_attempts_were_counted_open_as_one_attempt(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.upsert([doc("a.jpg"), doc("b.jpg", 1)])
    store.set_texts([(image_id_for("a.jpg"), "sha-a.jpg", reading("Agenda")),
                     (image_id_for("b.jpg"), "sha-b.jpg", ReadText("failed", reason="took longer than 120 s"))])
    store.close()
    db = sqlite3.connect(tmp_path / "findimage.sqlite")  # as schema 3 left it
    db.executescript("ALTER TABLE texts DROP COLUMN attempts; UPDATE meta SET value='3' WHERE key='schema_version';")
    db.close()

    store = EmbeddedStore(tmp_path)
    assert store.texts_by_sha256(["sha-a.jpg", "sha-b.jpg"]) == {
        "sha-a.jpg": reading("Agenda"), "sha-b.jpg": ReadText("failed", reason="took longer than 120 s")}
    assert store.texts_by_sha256(["sha-b.jpg"])["sha-b.jpg"].attempts == 1
    assert store.text_pending(5) == [], "a failure recorded before stays done"
    store.set_texts([(image_id_for("b.jpg"), "sha-b.jpg", ReadText("timed_out", reason="slow", attempts=2))])
    assert [s.relative_path for s in store.text_pending(5)] == ["b.jpg"]
    assert store.texts_by_sha256(["sha-b.jpg"])["sha-b.jpg"].attempts == 2


def test_set_texts_is_one_transaction_and_leaves_the_knn_cache_alone(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.upsert([doc("a.jpg"), doc("b.jpg")])
    store.checkpoint()
    version = current_version(store._db)
    store.set_texts([(image_id_for("a.jpg"), "sha-a.jpg", reading("first"))])
    assert current_version(store._db) == version, "no vector changed: the kNN snapshot stays current"
    assert store.details()[0][1].endswith("(current)")
    with pytest.raises(ValueError):
        store.set_texts([(image_id_for("b.jpg"), "sha-b.jpg", reading("second")),
                         (image_id_for("a.jpg"), "sha-a.jpg", ReadText("unknown"))])
    assert store.texts_by_sha256(["sha-a.jpg", "sha-b.jpg"]) == {"sha-a.jpg": reading("first")}, \
        "nothing of the refused batch was written"


def test_one_line_matches_come_first_beyond_the_bm25_window(tmp_path):
    """Exact on the embedded store: a one-line match ranked last by BM25 still comes first."""
    store = EmbeddedStore(tmp_path)
    spread = [doc(f"spread/{i:02d}.jpg", i) for i in range(30)]
    store.upsert([*spread, doc("one/line.jpg", 99)])
    store.set_texts([(d.image_id, d.sha256, reading("Disk", "Quota")) for d in spread] +
                    [(image_id_for("one/line.jpg"), "sha-one/line.jpg",
                      reading("disk quota exceeded on the volume holding the shared project data",
                              "lorem ipsum " * 25))])
    found = store.text_ranking(doc("q").image_embedding, ["disk", "quota"], 3)
    assert [m.relative_path for m in found] == ["one/line.jpg", "spread/00.jpg", "spread/01.jpg"]
    assert store.text_ranking(doc("q").image_embedding, ["quota"], 1)[0].relative_path == "spread/00.jpg"

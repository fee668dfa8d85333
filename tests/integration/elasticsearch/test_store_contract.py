"""One contract, both stores: whatever backend a team runs, documents and rankings behave the same."""
from __future__ import annotations

import dataclasses
import os
import time
import uuid

import numpy as np
import pytest

from findimage.backends import open_store
from findimage.errors import StoreError
from findimage.names import query_words
from findimage.query import query_filters as where  # the filters as a query's edge builds them
from findimage.records import ImageDoc, Match, ReadText, TextLine, image_id_for

ES_URL = os.environ.get("FINDIMAGE_TEST_ES_URL")
BACKENDS = ["embedded", pytest.param("elasticsearch", marks=[
    pytest.mark.elasticsearch,
    pytest.mark.skipif(not ES_URL, reason="FINDIMAGE_TEST_ES_URL not set (scripts/elasticsearch.sh start)")])]


@pytest.fixture(params=BACKENDS)
def store(request, settings):
    if request.param == "elasticsearch":
        settings = dataclasses.replace(settings, elasticsearch_url=ES_URL,
                                       index_name=f"test-contract-{uuid.uuid4().hex[:8]}")
    opened = open_store(settings, writer=True)  # as the indexer: the index exists, empty
    yield opened
    if request.param == "elasticsearch":
        opened.drop()
    opened.close()


# A fixed random orthonormal basis: test vectors are dense like real embeddings (quantized indices such as
# int8_hnsw handle those well), while their cosines stay exactly known.
BASIS = np.linalg.qr(np.random.default_rng(7).standard_normal((512, 8)))[0].T.astype(np.float32)


def unit(*components: float) -> np.ndarray:
    v = np.asarray(components, np.float32) @ BASIS[: len(components)]
    return v / np.linalg.norm(v)


def doc(path: str, vector: np.ndarray, sha: str | None = None, model: str = "m1", taken: str | None = None,
        taken_source: str = "") -> ImageDoc:
    return ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector, sha or f"sha-{path}", 1234,
                    1700000000.5, 640, 480, time.time(), model, taken,
                    taken_source or ("exif_original" if taken else ""))


def test_upsert_then_get_returns_the_document(store):
    original = doc("events/2024/stage.jpg", unit(1, 2, 3))
    store.upsert([original])
    got = store.get(original.image_id)
    assert (got.image_name, got.relative_path, got.sha256, got.size, got.width, got.height, got.model_id) == (
        "stage.jpg", "events/2024/stage.jpg", original.sha256, 1234, 640, 480, "m1")
    assert got.mtime == pytest.approx(1700000000.5)
    assert np.allclose(got.image_embedding, original.image_embedding, atol=1e-6)
    assert store.get(image_id_for("missing.jpg")) is None
    assert store.count() == 1


def test_upsert_of_the_same_path_updates_instead_of_duplicating(store):
    store.upsert([doc("a.jpg", unit(1, 0))])
    store.upsert([doc("a.jpg", unit(0, 1), sha="new")])
    assert store.count() == 1
    [best] = store.knn(unit(0, 1), k=1)
    assert best.relative_path == "a.jpg" and best.score == pytest.approx(1.0, abs=0.01)
    assert store.get(image_id_for("a.jpg")).sha256 == "new"


def test_delete_removes_from_count_get_and_search(store):
    store.upsert([doc("a.jpg", unit(1, 0)), doc("b.jpg", unit(0, 1))])
    store.delete([image_id_for("a.jpg")])
    assert store.count() == 1 and store.get(image_id_for("a.jpg")) is None
    assert [m.relative_path for m in store.knn(unit(1, 0), k=5)] == ["b.jpg"]


def test_knn_orders_by_cosine_on_elasticsearch_scale(store):
    angles = [0.0, 0.3, 0.8, 1.4, 2.5]  # radians away from the query
    store.upsert([doc(f"img{i}.jpg", unit(np.cos(a), np.sin(a))) for i, a in enumerate(angles)])
    matches = store.knn(unit(1, 0), k=4)
    assert [m.relative_path for m in matches] == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]
    # k=4 of the 5 angles: the farthest one is not among the matches
    for match, angle in zip(matches, angles, strict=False):
        assert match.score == pytest.approx((1 + np.cos(angle)) / 2, abs=0.01)
    assert store.knn(unit(1, 0), k=2, num_candidates=50)[1].relative_path == "img1.jpg"


def test_folder_filter_keeps_only_that_folder(store):
    store.upsert([doc("events/2024/a.jpg", unit(1, 0.1)), doc("events/2024/sub/b.jpg", unit(1, 0.2)),
                  doc("events/20245/c.jpg", unit(1, 0)), doc("nature/d.jpg", unit(1, 0))])
    found = [m.relative_path for m in store.knn(unit(1, 0), k=10, filters=where(folder="events/2024"))]
    assert found == ["events/2024/a.jpg", "events/2024/sub/b.jpg"]
    assert [m.relative_path for m in store.knn(unit(1, 0), k=10, filters=where(folder="/nature/"))] == ["nature/d.jpg"]
    assert store.knn(unit(1, 0), k=10, filters=where(folder="nowhere")) == []


def test_empty_store_finds_nothing(store):
    assert store.count() == 0 and store.knn(unit(1), k=5) == []


def test_file_states_and_vector_reuse_by_content(store):
    store.upsert([doc("x/a.jpg", unit(1, 0), sha="s1"), doc("x/b.jpg", unit(0, 1), sha="s2", model="m2")])
    states = store.file_states()
    assert set(states) == {"x/a.jpg", "x/b.jpg"}
    assert (states["x/a.jpg"].sha256, states["x/a.jpg"].size, states["x/a.jpg"].model_id) == ("s1", 1234, "m1")
    reused = store.vectors_by_sha256(["s1", "s2", "unknown"], "m1")
    assert set(reused) == {"s1"} and np.allclose(reused["s1"], unit(1, 0), atol=1e-6)


def test_metadata_round_trip(store):
    assert store.get_meta("last_pass") is None
    store.set_meta("last_pass", '{"added": 3}')
    store.set_meta("last_pass", '{"added": 4}')
    assert store.get_meta("last_pass") == '{"added": 4}'


def test_many_documents_in_batches(store):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((600, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, 600, 200):
        store.upsert([doc(f"bulk/{i}.jpg", vectors[i]) for i in range(start, start + 200)])
    store.checkpoint()
    assert store.count() == 600
    exact = np.argsort(-(vectors @ vectors[42]))[:10]
    found = [int(m.relative_path.split("/")[1].split(".")[0]) for m in store.knn(vectors[42], k=10)]
    assert found[0] == 42 and len(set(found) & set(exact.tolist())) >= 9


NAMED = ["2024-06 Sommerfest/crowd-01.jpg", "2024-06 Sommerfest/stage.jpg", "Kunden/Kundenbesuch_Bosch_03.jpg",
         "Messe Hannover 2023/hall.jpg", "Messe Hannover 2023/Sommerfest-poster.jpg", "misc/Ärger.jpg",
         "misc/bosch-und-siemens.jpg", "misc/tree.jpg"]


def named_archive(store) -> dict[str, np.ndarray]:
    vectors = {path: unit(*np.random.default_rng(i).standard_normal(8)) for i, path in enumerate(NAMED)}
    store.upsert([doc(path, vector) for path, vector in vectors.items()])
    store.checkpoint()
    return vectors


def paths(matches) -> list[str]:
    return [m.relative_path for m in matches]


def test_hybrid_ranks_path_words_by_bm25_beside_the_clip_ranking(store):
    vectors = named_archive(store)
    by_image, by_name = store.hybrid(unit(1, 0), ["bosch"], k=10)
    assert paths(by_image) == paths(store.knn(unit(1, 0), k=10))
    assert set(paths(by_name)) == {"Kunden/Kundenbesuch_Bosch_03.jpg", "misc/bosch-und-siemens.jpg"}
    assert all(m.matched == ("name",) for m in by_name)
    for match in by_name:  # a name match carries its CLIP score, for display
        cosine = float(vectors[match.relative_path] @ unit(1, 0))
        assert match.score == pytest.approx((1 + cosine) / 2, abs=0.01)
    _, by_name = store.hybrid(unit(1, 0), ["sommerfest"], k=10)
    assert set(paths(by_name)) == {"2024-06 Sommerfest/crowd-01.jpg", "2024-06 Sommerfest/stage.jpg",
                                   "Messe Hannover 2023/Sommerfest-poster.jpg"}
    assert paths(store.hybrid(unit(1, 0), ["arger"], k=10)[1]) == ["misc/Ärger.jpg"]
    assert store.hybrid(unit(1, 0), ["xyzzy"], k=10)[1] == []


def test_hybrid_applies_the_folder_filter_to_both_rankings(store):
    named_archive(store)
    by_image, by_name = store.hybrid(unit(1, 0), ["sommerfest"], k=10, filters=where(folder="Messe Hannover 2023"))
    assert set(paths(by_image)) == {"Messe Hannover 2023/hall.jpg", "Messe Hannover 2023/Sommerfest-poster.jpg"}
    assert paths(by_name) == ["Messe Hannover 2023/Sommerfest-poster.jpg"]


def test_names_follow_updates_and_deletes(store):
    named_archive(store)
    store.delete([image_id_for("Kunden/Kundenbesuch_Bosch_03.jpg")])
    store.upsert([doc("misc/bosch-und-siemens.jpg", unit(0, 1), sha="new")])
    assert paths(store.hybrid(unit(1, 0), ["bosch"], k=10)[1]) == ["misc/bosch-und-siemens.jpg"]
    assert paths(store.hybrid(unit(1, 0), ["kundenbesuch"], k=10)[1]) == []


def test_date_filters_apply_inside_the_search(store):
    store.upsert([doc("may.jpg", unit(1, 0.5), taken="2024-05-31T23:59:59"),
                  doc("june.jpg", unit(1, 0.9), taken="2024-06-01T00:00:00"),
                  doc("july.jpg", unit(1, 0), taken="2024-07-01T00:00:00"),
                  doc("undated.jpg", unit(1, 0.1))])
    june, july = "2024-06-01T00:00:00", "2024-07-01T00:00:00"
    assert paths(store.knn(unit(1, 0), k=1, filters=where(after=june))) == ["july.jpg"]
    assert paths(store.knn(unit(1, 0), k=1, filters=where(after=june, before=july))) == ["june.jpg"]
    assert paths(store.knn(unit(1, 0), k=10, filters=where(before=june))) == ["may.jpg"]
    found = store.knn(unit(1, 0), k=10, filters=where(after="2024-01-01T00:00:00"))
    assert paths(found) == ["july.jpg", "may.jpg", "june.jpg"]
    assert (found[0].taken, found[0].taken_source) == ("2024-07-01T00:00:00", "exif_original")
    by_image, by_name = store.hybrid(unit(1, 0), ["may", "june"], k=10, filters=where(before=july))
    assert set(paths(by_image)) == {"may.jpg", "june.jpg"} and set(paths(by_name)) == {"may.jpg", "june.jpg"}
    assert paths(store.hybrid(unit(1, 0), ["july"], k=10, filters=where(before=july))[1]) == []


def test_add_dates_upgrades_documents_without_touching_vectors(store):
    store.upsert([doc("old/Sommerfest.jpg", unit(1, 0))])
    assert store.file_states()["old/Sommerfest.jpg"].taken_source == ""
    store.add_dates([(image_id_for("old/Sommerfest.jpg"), "old/Sommerfest.jpg", "2024-06-14T18:03:00", "mtime")])
    got = store.get(image_id_for("old/Sommerfest.jpg"))
    assert (got.taken, got.taken_source) == ("2024-06-14T18:03:00", "mtime")
    assert np.allclose(got.image_embedding, unit(1, 0), atol=1e-6)
    assert store.file_states()["old/Sommerfest.jpg"].taken_source == "mtime"
    assert paths(store.knn(unit(1, 0), k=5, filters=where(after="2024-06-01T00:00:00"))) == ["old/Sommerfest.jpg"]
    assert paths(store.hybrid(unit(1, 0), ["sommerfest"], k=5)[1]) == ["old/Sommerfest.jpg"]


def test_a_date_filter_finds_matches_far_beyond_the_unfiltered_candidates(store):
    near = [doc(f"recent/{i}.jpg", unit(1, 0.01 * i), taken="2024-06-01T00:00:00") for i in range(300)]
    store.upsert(near + [doc("old/far.jpg", unit(0, 1), taken="1999-01-01T00:00:00")])
    store.checkpoint()
    assert paths(store.knn(unit(1, 0), k=1, filters=where(before="2000-01-01T00:00:00"))) == ["old/far.jpg"]
    recent = store.knn(unit(1, 0), k=2, filters=where(after="2024-01-01T00:00:00"))
    assert paths(recent) == ["recent/0.jpg", "recent/1.jpg"]


# ---- text read from the images ------------------------------------------------------------------------
def line(text: str, confidence: float = 0.9, at: int = 0) -> TextLine:
    return TextLine(text, ((10, 20 + at), (400, 20 + at), (400, 48 + at), (10, 48 + at)), confidence)


def read(*lines: str) -> ReadText:
    return ReadText("read", tuple(line(text, 0.5 + i / 10, 40 * i) for i, text in enumerate(lines)))


QUOTA = read("ERROR: disk quota exceeded on volume /srv/data",
             "contact the administrator of this server before the end of the working day")
TEXTS = {
    "logs/quota.png": QUOTA,
    "logs/spread.png": read("Disk", "Quota"),  # both words, in two lines of a short text
    "reports/2025/forecast.png": read("Umsatzprognose 2025", "Q1 Q2 Q3 Q4"),
    "reports/2024/overview.png": read("Inhalt", "Größenordnung und Überblick"),
    "scans/blurred.png": ReadText("failed", reason="image too small to read"),
    "scans/blank.png": ReadText("read"),
}
TAKEN = {"reports/2025/forecast.png": "2025-01-10T09:00:00", "reports/2024/overview.png": "2024-06-01T12:00:00"}


def texted_archive(store) -> dict[str, np.ndarray]:
    """The documents of TEXTS with their readings, and one (plain.jpg) whose text was not read yet."""
    vectors = {path: unit(*np.random.default_rng(50 + i).standard_normal(8))
               for i, path in enumerate([*TEXTS, "plain.jpg"])}
    store.upsert([doc(path, vector, taken=TAKEN.get(path)) for path, vector in vectors.items()])
    store.set_texts([(image_id_for(path), f"sha-{path}", reading) for path, reading in TEXTS.items()])
    store.checkpoint()
    return vectors


def by_text(store, query: str, k: int = 10, **filters) -> list[Match]:
    return store.text_ranking(unit(1, 0), query_words(query), k, **filters)


def test_text_ranking_finds_words_read_in_images_as_people_type_them(store):
    vectors = texted_archive(store)
    for query in ("Umsatzprognose", "umsatzprognose 2025", "UMSATZPROGNOSE"):
        [found] = by_text(store, query)
        assert (found.relative_path, found.matched, found.text_snippet) == (
            "reports/2025/forecast.png", ("text",), "Umsatzprognose 2025")
        cosine = float(vectors[found.relative_path] @ unit(1, 0))  # the CLIP score, as for name matches
        assert found.score == pytest.approx((1 + cosine) / 2, abs=0.01)
    for query in ("uberblick", "Überblick", "grossenordnung", "Größenordnung", "GRÖSSENORDNUNG"):
        [found] = by_text(store, query)
        assert (found.relative_path, found.text_snippet) == ("reports/2024/overview.png",
                                                              "Größenordnung und Überblick")
    assert paths(by_text(store, "srv data")) == ["logs/quota.png"]
    # Words are folded by the store too: a caller passing them as typed finds the same.
    assert paths(store.text_ranking(unit(1, 0), ["Größenordnung"], 10)) == ["reports/2024/overview.png"]
    assert by_text(store, "xyzzy") == [] and store.text_ranking(unit(1, 0), [], 10) == []
    assert by_text(store, "image too small") == [], "a failure's reason is not text of the image"
    assert found.as_json()["text_snippet"] == "Größenordnung und Überblick"


def test_all_query_words_in_one_line_rank_above_words_spread_over_lines(store):
    texted_archive(store)
    # One word: both hold it in one line, and BM25 prefers the short text.
    assert paths(by_text(store, "quota")) == ["logs/spread.png", "logs/quota.png"]
    found = by_text(store, "disk quota")
    assert paths(found) == ["logs/quota.png", "logs/spread.png"]
    assert [m.text_snippet for m in found] == ["ERROR: disk quota exceeded on volume /srv/data",
                                               "Disk"]  # the first of equally good lines
    assert paths(by_text(store, "disk quota", k=1)) == ["logs/quota.png"]
    # The line holding most of the words is the snippet, wherever it stands.
    [overview] = by_text(store, "inhalt und uberblick")
    assert overview.text_snippet == "Größenordnung und Überblick"


def test_one_line_matches_come_first_over_every_match(store):
    """Not only among the best by BM25: a one-line match that BM25 ranks last still comes first, and words
    in two lines of a short text do not count as one line."""
    spread = [doc(f"spread/{i:02d}.png", unit(1, i)) for i in range(30)]
    store.upsert([*spread, doc("one/line.png", unit(0, 1))])
    store.set_texts([(d.image_id, d.sha256, read("Disk", "Quota")) for d in spread] +
                    [(image_id_for("one/line.png"), "sha-one/line.png",
                      read("disk quota exceeded on the volume holding the shared project data", "lorem ipsum " * 25))])
    store.checkpoint()
    found = by_text(store, "disk quota", k=3)
    assert paths(found)[0] == "one/line.png" and {*paths(found)[1:]} <= {d.relative_path for d in spread}
    assert paths(by_text(store, "disk quota", k=1, filters=where(folder="one"))) == ["one/line.png"]
    assert paths(by_text(store, "quota", k=1))[0].startswith("spread/"), "one word: BM25 alone"


def test_text_ranking_applies_folder_and_date_filters(store):
    texted_archive(store)
    assert paths(by_text(store, "disk quota", filters=where(folder="logs/"))) == ["logs/quota.png", "logs/spread.png"]
    assert by_text(store, "disk quota", filters=where(folder="reports")) == []
    query = "umsatzprognose uberblick"
    assert set(paths(by_text(store, query, filters=where(folder="reports")))) == {"reports/2025/forecast.png",
                                                                   "reports/2024/overview.png"}
    assert paths(by_text(store, query, filters=where(folder="reports/2024"))) == ["reports/2024/overview.png"]
    assert paths(by_text(store, query, filters=where(after="2025-01-01T00:00:00"))) == ["reports/2025/forecast.png"]
    assert paths(by_text(store, query, filters=where(before="2025-01-01T00:00:00"))) == ["reports/2024/overview.png"]
    assert by_text(store, "disk", filters=where(after="2000-01-01T00:00:00")) == [], \
        "undated documents fail a date filter"


def test_text_pending_lists_what_has_no_reading_and_status_counts(store):
    texted_archive(store)
    assert [s.relative_path for s in store.text_pending(100)] == ["plain.jpg"]
    assert store.text_status() == (len(TEXTS), len(TEXTS) + 1), "failed and empty readings count as done"
    [plain] = store.text_pending(1)
    assert (plain.image_id, plain.sha256, plain.size, plain.model_id) == (
        image_id_for("plain.jpg"), "sha-plain.jpg", 1234, "m1")
    store.upsert([doc(f"new/{i}.jpg", unit(1, i)) for i in range(3)])
    pending = [s.relative_path for s in store.text_pending(100)]
    assert pending == ["new/0.jpg", "new/1.jpg", "new/2.jpg", "plain.jpg"], "in a stable order: by path"
    assert [s.relative_path for s in store.text_pending(2)] == pending[:2] and store.text_pending(0) == []
    store.set_texts([(image_id_for("plain.jpg"), "sha-plain.jpg", ReadText("read"))])
    assert "plain.jpg" not in [s.relative_path for s in store.text_pending(100)]
    assert store.text_status() == (len(TEXTS) + 1, len(TEXTS) + 4)


def test_texts_are_kept_intact_by_content(store):
    texted_archive(store)
    stored = store.texts_by_sha256(["sha-logs/quota.png", "sha-scans/blurred.png", "sha-scans/blank.png",
                                    "sha-plain.jpg", "unknown"])
    assert stored == {"sha-logs/quota.png": QUOTA, "sha-scans/blurred.png": TEXTS["scans/blurred.png"],
                      "sha-scans/blank.png": ReadText("read")}
    assert stored["sha-logs/quota.png"].lines[1].box == ((10, 60), (400, 60), (400, 88), (10, 88))
    assert stored["sha-logs/quota.png"].lines[1].confidence == 0.6
    assert stored["sha-scans/blurred.png"] == ReadText("failed", (), "image too small to read")
    # A copy of read content reuses the reading.
    store.upsert([doc("copies/quota.png", unit(0, 1), sha="sha-logs/quota.png")])
    assert store.texts_by_sha256(["sha-logs/quota.png"]) == {"sha-logs/quota.png": QUOTA}
    store.set_texts([(image_id_for("copies/quota.png"), "sha-logs/quota.png", QUOTA)])
    assert set(paths(by_text(store, "disk quota"))) == {"logs/quota.png", "copies/quota.png", "logs/spread.png"}


def test_texts_follow_upserts_and_deletes(store):
    vectors = texted_archive(store)
    forecast, quota = "reports/2025/forecast.png", "logs/quota.png"
    touched = dataclasses.replace(doc(forecast, vectors[forecast], taken=TAKEN[forecast]), mtime=1800000000.0)
    store.upsert([touched])  # same content: the reading stays
    assert paths(by_text(store, "umsatzprognose")) == [forecast]
    assert forecast not in [s.relative_path for s in store.text_pending(100)]
    store.upsert([doc(forecast, vectors[forecast], sha="sha-edited")])  # other content: it goes
    assert by_text(store, "umsatzprognose") == []
    assert [s.relative_path for s in store.text_pending(100)] == ["plain.jpg", forecast]
    assert store.texts_by_sha256([f"sha-{forecast}", "sha-edited"]) == {}
    store.delete([image_id_for(quota)])
    assert paths(by_text(store, "disk quota")) == ["logs/spread.png"]
    assert store.texts_by_sha256([f"sha-{quota}"]) == {}
    assert store.text_status() == (len(TEXTS) - 2, len(TEXTS))
    store.upsert([doc(quota, vectors[quota])])  # back with the content it had: read again
    assert quota in [s.relative_path for s in store.text_pending(100)]


def test_a_reading_of_content_a_document_no_longer_holds_is_not_kept(store):
    texted_archive(store)
    store.set_texts([(image_id_for("plain.jpg"), "sha-before-an-edit", read("stale words")),
                     (image_id_for("gone.jpg"), "sha-gone", read("orphan words"))])
    assert by_text(store, "stale orphan") == []
    assert [s.relative_path for s in store.text_pending(100)] == ["plain.jpg"]
    assert store.texts_by_sha256(["sha-before-an-edit", "sha-gone"]) == {}
    with pytest.raises(ValueError):
        store.set_texts([(image_id_for("plain.jpg"), "sha-plain.jpg", ReadText("pending"))])


def test_a_new_reading_replaces_the_old(store):
    texted_archive(store)
    overview = "reports/2024/overview.png"
    store.set_texts([(image_id_for(overview), f"sha-{overview}", read("Agenda"))])
    assert by_text(store, "uberblick") == [] and paths(by_text(store, "agenda")) == [overview]
    store.set_texts([(image_id_for(overview), f"sha-{overview}", ReadText("failed", reason="timeout"))])
    assert by_text(store, "agenda") == []
    assert store.texts_by_sha256([f"sha-{overview}"]) == {f"sha-{overview}": ReadText("failed", (), "timeout")}


def test_a_reading_that_timed_out_leaves_its_document_pending_with_its_attempts(store):
    """It is read again on a later pass (indexer.text_stage), a bounded number of times: the store keeps it
    pending, not done, and says how often it was tried."""
    texted_archive(store)
    plain = image_id_for("plain.jpg")
    slow = ReadText("timed_out", reason="reading its text took longer than 120 s", attempts=2)
    store.set_texts([(plain, "sha-plain.jpg", slow)])
    assert [s.relative_path for s in store.text_pending(100)] == ["plain.jpg"]
    assert store.text_status() == (len(TEXTS), len(TEXTS) + 1), "not done"
    assert store.texts_by_sha256(["sha-plain.jpg"]) == {"sha-plain.jpg": slow}
    # A copy whose reading was kept for good gives the content its reading, not the timeout.
    store.upsert([doc("copies/plain.jpg", unit(0, 1), sha="sha-plain.jpg")])
    store.set_texts([(image_id_for("copies/plain.jpg"), "sha-plain.jpg", read("Agenda"))])
    assert store.texts_by_sha256(["sha-plain.jpg"]) == {"sha-plain.jpg": read("Agenda")}
    # The last timeout is recorded as failed: done, with its attempts, until the content changes.
    given_up = ReadText("failed", reason="reading its text took longer than 120 s (3 times)", attempts=3)
    store.set_texts([(plain, "sha-plain.jpg", given_up)])
    assert store.text_pending(100) == [] and store.text_status() == (len(TEXTS) + 2, len(TEXTS) + 2)
    store.delete([image_id_for("copies/plain.jpg")])
    assert store.texts_by_sha256(["sha-plain.jpg"]) == {"sha-plain.jpg": given_up}
    assert by_text(store, "took longer") == [], "a timeout's reason is not text of the image"


def without_lines(matches: list[Match]) -> list[Match]:
    return [dataclasses.replace(m, text_lines=()) for m in matches]


def test_hybrid_with_text_gives_the_three_rankings_at_once_every_candidate_with_its_text(store):
    texted_archive(store)
    for words, filters in ((["disk", "quota"], where()), (["umsatzprognose", "uberblick"], where(folder="reports")),
                           (["xyzzy"], where()), ([], where())):
        by_image, by_name = store.hybrid(unit(1, 0), words, 5, filters=filters)
        with_text = store.hybrid_with_text(unit(1, 0), words, 5, filters=filters)
        assert (without_lines(with_text[0]), without_lines(with_text[1])) == (by_image, by_name)
        # The text search's candidates (all of them here: fewer than k), found by text, every one-line match
        # first; their order and snippets are the fusion's to choose.
        ranked = store.text_ranking(unit(1, 0), words, 5, filters=filters)
        assert sorted((m.relative_path, m.score, m.text_lines) for m in with_text[2]) == sorted(
            (m.relative_path, m.score, m.text_lines) for m in ranked)
        one_line = [m.relative_path for m in ranked if all(w in m.text_snippet.lower() for w in words)]
        assert [m.relative_path for m in with_text[2]][:len(one_line)] == one_line
        assert all(m.matched == ("text",) for m in with_text[2])
        # Found by CLIP or by name, a picture still carries its text, for the fusion to judge it on.
        for match in (*with_text[0], *with_text[1], *with_text[2]):
            assert match.text_lines == lines_of(match.relative_path), match.relative_path
    by_image, _, _ = store.hybrid_with_text(unit(1, 0), ["xyzzy"], 10)
    assert {m.relative_path: m.text_lines for m in by_image if m.text_lines} == {
        path: lines_of(path) for path, reading in TEXTS.items() if reading.lines}


def lines_of(path: str) -> tuple[str, ...]:
    reading = TEXTS.get(path)
    return tuple(line.text for line in reading.lines) if reading else ()


def test_a_store_writes_into_no_index_but_its_own_rebuilds(store):
    """A worker is told where a rebuild writes: never into an index that is not one of this store's."""
    with pytest.raises(StoreError, match="neither the live index of .* nor its rebuild|no rebuild in progress"):
        store.write_into("someone-elses-index")
    store.write_into(None)  # as usual
    assert store.rebuild_target() is None, "no rebuild is running"


# ---- near-identical pictures (findimage.fingerprint) ----------------------------------------------------
@pytest.fixture(scope="module")
def pictures() -> dict[str, str]:
    """Fingerprints as the indexer makes them, of two originals, some of the first one's copies and a
    look-alike of it (another shot of the same scene), by name."""
    from near_copies import as_indexed, corpus

    from findimage.fingerprint import fingerprint

    first, second = corpus(2, scale=0.5)
    files = {"original": first.original, "other original": second.original,
             "look-alike": first.lookalikes["objects moved"],
             **{what: first.copies[what] for what in ("jpeg q30", "cropped 10% left", "caption", "exif rotated 90")}}
    return {name: fingerprint(as_indexed(data)).to_string() for name, data in files.items()}


def pictured(path: str, fingerprint: str, size: int = 1234, sha: str | None = None) -> ImageDoc:
    return dataclasses.replace(doc(path, unit(1, len(path)), sha=sha), fingerprint=fingerprint, size=size)


def test_a_near_copy_finds_its_original_but_not_another_shot_of_the_scene(store, pictures):
    from findimage.fingerprint import Fingerprint

    store.upsert([pictured("archive/original.jpg", pictures["original"]),
                  pictured("archive/other.jpg", pictures["other original"]),
                  pictured("archive/look-alike.jpg", pictures["look-alike"])])
    assert store.get(image_id_for("archive/original.jpg")).fingerprint == pictures["original"]
    posted = Fingerprint.from_string(pictures["jpeg q30"])
    [found] = store.near_copies(posted)
    assert (found.relative_path, found.image_id, found.size, found.score) == (
        "archive/original.jpg", image_id_for("archive/original.jpg"), 1234, 1.0)
    assert found.fingerprint == pictures["original"], "its own fingerprint comes with it: no second look-up"
    assert store.near_copies(posted, where(folder="elsewhere")) == []
    assert paths(store.near_copies(posted, where(folder="archive"))) == ["archive/original.jpg"]
    assert store.fingerprints_of([image_id_for("archive/original.jpg"), image_id_for("missing.jpg")]) == {
        image_id_for("archive/original.jpg"): pictures["original"]}
    store.delete([image_id_for("archive/original.jpg")])
    assert store.near_copies(posted) == []


def test_a_document_written_again_without_a_fingerprint_waits_for_one(store, pictures):
    from findimage.fingerprint import Fingerprint

    store.upsert([pictured("a.jpg", pictures["original"], sha="one"), pictured("b.jpg", pictures["other original"])])
    assert store.fingerprint_pending() == []
    store.upsert([doc("a.jpg", unit(1, 0), sha="two")])  # as a release before fingerprints wrote it
    assert [s.relative_path for s in store.fingerprint_pending()] == ["a.jpg"]
    assert store.near_copies(Fingerprint.from_string(pictures["caption"])) == []
    store.set_fingerprints([(image_id_for("a.jpg"), "one", pictures["original"])])  # of content it no longer holds
    assert [s.relative_path for s in store.fingerprint_pending()] == ["a.jpg"]
    store.set_fingerprints([(image_id_for("a.jpg"), "two", pictures["original"]),
                            (image_id_for("gone.jpg"), "x", pictures["original"])])
    assert store.fingerprint_pending() == []
    assert paths(store.near_copies(Fingerprint.from_string(pictures["caption"]))) == ["a.jpg"]
    assert np.allclose(store.get(image_id_for("a.jpg")).image_embedding, unit(1, 0), atol=1e-6)


def test_the_duplicates_report_groups_copies_with_their_original_and_no_look_alike(store, pictures):
    from findimage.duplicates import duplicate_groups

    sizes = {"original": 90_000, "jpeg q30": 20_000, "cropped 10% left": 70_000, "caption": 80_000,
             "exif rotated 90": 60_000, "look-alike": 85_000, "other original": 95_000}
    store.upsert([pictured(f"{'team' if name == 'caption' else 'photos'}/{name}.jpg", pictures[name], size)
                  for name, size in sizes.items()])
    [found] = duplicate_groups(store)
    assert [(m.relative_path, m.bytes) for m in found.members] == [
        ("photos/original.jpg", 90_000), ("team/caption.jpg", 80_000), ("photos/cropped 10% left.jpg", 70_000),
        ("photos/exif rotated 90.jpg", 60_000), ("photos/jpeg q30.jpg", 20_000)]
    assert found.extra_bytes == 230_000
    assert found.as_json() == {"members": [{"relative_path": m.relative_path, "bytes": m.bytes}
                                           for m in found.members]}
    [under] = duplicate_groups(store, "photos")
    assert "team/caption.jpg" not in [m.relative_path for m in under.members] and len(under.members) == 4
    assert duplicate_groups(store, "team") == []

"""Searching the way teams remember, end to end on both stores with random-weight models (CLIP ranks at
random here, so whatever these tests find, they find through names, dates and file contents)."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3

import es_support
import pytest
from es_support import both_stores
from photos import save_photo
from PIL import Image

from findimage.query import query_filters
from findimage_cli import main
from indexer.run import index_once

NAMED = ["2024-06 Sommerfest/crowd-01.jpg", "2024-06 Sommerfest/crowd-02.jpg", "2024-06 Sommerfest/stage.jpg",
         "Kunden/Kundenbesuch_Bosch_03.jpg", "Messe Hannover 2023/hall-1.jpg", "Messe Hannover 2023/hall-2.jpg",
         "Messe Hannover 2023/Sommerfest-Plakat.jpg", "misc/Ärger.jpg", "misc/tree.jpg", "misc/lake.jpg",
         "misc/river.jpg", "misc/sky.jpg"]


@pytest.fixture
def named(settings):
    for seed, path in enumerate(NAMED):
        save_photo(settings.archive / path, seed=300 + seed, size=(160, 120))
    return settings.archive


def search(capsys, *argv: str) -> list[dict]:
    code = main(["search", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def paths(found: list[dict]) -> list[str]:
    return [m["relative_path"] for m in found]


@both_stores
def test_a_folder_or_file_name_finds_its_images_first(settings, named, capsys):
    index_once(settings)
    found = search(capsys, "Sommerfest", "-k", "4")
    assert set(paths(found)[:3]) <= {p for p in NAMED if "Sommerfest" in p}
    assert all("name" in m["matched"] for m in found[:3])
    assert paths(search(capsys, "bosch", "-k", "3"))[0] == "Kunden/Kundenbesuch_Bosch_03.jpg"
    for spelling in ("ärger", "arger", "ÄRGER"):
        first = search(capsys, spelling, "-k", "3")[0]
        assert first["relative_path"] == "misc/Ärger.jpg" and first["matched"] == ["image", "name"]
        assert 0 <= first["score"] <= 1  # the CLIP score, shown as for any match


@both_stores
def test_a_query_matching_no_name_ranks_exactly_as_clip_alone(settings, named, capsys, monkeypatch):
    index_once(settings)
    hybrid = search(capsys, "a quiet evening by the water", "-k", "10")
    monkeypatch.setenv("FINDIMAGE_HYBRID", "off")
    clip = search(capsys, "a quiet evening by the water", "-k", "10")
    assert hybrid == clip and all(m["matched"] == ["image"] for m in hybrid)


@both_stores
def test_hybrid_off_ignores_names(settings, named, capsys, monkeypatch):
    index_once(settings)
    monkeypatch.setenv("FINDIMAGE_HYBRID", "off")
    found = search(capsys, "Sommerfest", "-k", "12")
    assert all(m["matched"] == ["image"] for m in found)
    monkeypatch.setenv("FINDIMAGE_HYBRID", "on")
    assert search(capsys, "Sommerfest", "-k", "12") != found


@both_stores
def test_the_folder_filter_applies_to_names_too(settings, named, capsys):
    index_once(settings)
    found = search(capsys, "Sommerfest", "--folder", "Messe Hannover 2023", "-k", "5")
    assert sorted(paths(found)) == sorted(p for p in NAMED if p.startswith("Messe Hannover 2023/"))
    assert found[0]["relative_path"] == "Messe Hannover 2023/Sommerfest-Plakat.jpg"


@both_stores
def test_identical_copies_are_one_result_with_the_other_paths(settings, named, capsys):
    archive = named
    for copy in ("copies/crowd.jpg", "backup/2024/crowd-01.jpg"):
        (archive / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive / "2024-06 Sommerfest/crowd-01.jpg", archive / copy)
    index_once(settings)
    found = search(capsys, "crowd", "-k", "15")
    assert len(found) == len(NAMED)  # k results are k different pictures
    [crowd] = [m for m in found if m["also_at"]]
    assert {crowd["relative_path"], *crowd["also_at"]} == {"2024-06 Sommerfest/crowd-01.jpg", "copies/crowd.jpg",
                                                           "backup/2024/crowd-01.jpg"}
    image = search(capsys, "--image", str(archive / "copies/crowd.jpg"), "-k", "3")
    assert len(image[0]["also_at"]) == 2 and len({m["relative_path"] for m in image}) == 3
    [only] = search(capsys, "--image", str(archive / "copies/crowd.jpg"), "-k", "1")
    assert len(only["also_at"]) == 2  # copies are looked for beyond the k asked for
    main(["search", "crowd", "-k", "15"])
    assert "(also at " in capsys.readouterr().out


def dated(path, seed: int, original: str | None = None, plain: str | None = None, mtime: float | None = None):
    exif = Image.Exif()
    if plain:
        exif[0x0132] = plain
    if original:
        exif.get_ifd(0x8769)[0x9003] = original
    save_photo(path, seed=seed, size=(160, 120), exif=exif)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@both_stores
def test_dates_from_exif_filter_and_show(settings, capsys):
    archive = settings.archive
    dated(archive / "a/may.jpg", 1, original="2024:05:31 23:59:59")
    dated(archive / "a/june.jpg", 2, original="2024:06:14 18:03:00")
    dated(archive / "a/june-plain.jpg", 3, plain="2024:06:30 10:00:00")
    dated(archive / "a/july.jpg", 4, original="2024:07:01 00:00:00")
    dated(archive / "a/absurd.jpg", 5, original="0000:00:00 00:00:00", mtime=1718000000)  # 2024-06-10
    dated(archive / "a/future.jpg", 6, original="2999:01:01 00:00:00", mtime=1600000000)  # 2020-09
    summary = index_once(settings)
    assert summary.added == 6 and summary.failed == 0
    found = search(capsys, "people", "--after", "2024-06", "--before", "2024-07", "-k", "10")
    by_path = {m["relative_path"]: (m["taken"], m["taken_source"]) for m in found}
    assert by_path["a/june.jpg"] == ("2024-06-14T18:03:00", "exif_original")
    assert by_path["a/june-plain.jpg"] == ("2024-06-30T10:00:00", "exif_datetime")
    assert by_path["a/absurd.jpg"][1] == "mtime" and by_path["a/absurd.jpg"][0].startswith("2024-06")
    assert set(by_path) == {"a/june.jpg", "a/june-plain.jpg", "a/absurd.jpg"}
    assert paths(search(capsys, "people", "--after", "2024-07-01", "-k", "10")) == ["a/july.jpg"]
    assert set(paths(search(capsys, "people", "--before", "2024", "-k", "10"))) == {"a/future.jpg"}
    assert set(paths(search(capsys, "--image", str(archive / "a/may.jpg"), "--before", "2024-06"))) == {
        "a/may.jpg", "a/future.jpg"}
    main(["search", "people", "--after", "2024-07"])
    assert "a/july.jpg  2024-07-01" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--after", "2024-13"], "'2024-13' is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. --after 2024-05."),
    (["--before", "June"], "'June' is not a date: use YYYY, YYYY-MM or YYYY-MM-DD, e.g. --before 2024-05."),
    (["--after", "2024-07", "--before", "2024-05"], "the after date must come first"),
])
def test_bad_dates_get_one_sentence(settings, archive, capsys, argv, message):
    index_once(settings)
    code = main(["search", "people", *argv])
    assert code == 2 and message in capsys.readouterr().err


def make_old_embedded(settings) -> None:
    """The database as the version before names and dates left it."""
    db = sqlite3.connect(settings.data_dir / "findimage.sqlite")
    db.executescript("DROP INDEX images_taken; DROP TABLE names; ALTER TABLE images DROP COLUMN taken; "
                     "ALTER TABLE images DROP COLUMN taken_source; DELETE FROM meta WHERE key='schema_version';")
    db.close()


def make_old_elasticsearch(settings) -> None:
    """The index as the version before names and dates left it: old mapping, documents without the fields."""
    from elasticsearch import helpers

    from findimage.stores.elasticsearch.index import mapping
    from findimage.stores.elasticsearch.query import NEW_FIELDS

    es = es_support.client(settings.elasticsearch_url)
    alias, old = settings.index_name, f"{settings.index_name}-v2"
    [current] = es.indices.get_alias(name=alias)
    docs = [h for h in helpers.scan(es, index=alias)]
    meta = es.indices.get_mapping(index=current)[current]["mappings"].get("_meta", {})
    mappings = mapping(512, settings.es_index_options)
    for field in NEW_FIELDS:
        del mappings["properties"][field]
    es.indices.create(index=old, mappings={**mappings, "_meta": meta})
    helpers.bulk(es, ({"_index": old, "_id": h["_id"],
                       "_source": {k: v for k, v in h["_source"].items() if k not in NEW_FIELDS}} for h in docs),
                 refresh=True)
    es.indices.update_aliases(actions=[{"remove": {"index": current, "alias": alias}},
                                       {"add": {"index": old, "alias": alias}}])
    es.indices.delete(index=current)
    es.close()


@both_stores
def test_an_index_of_the_previous_version_gains_names_and_dates_without_embedding(settings, named, capsys):
    index_once(settings)
    (make_old_elasticsearch if settings.uses_elasticsearch else make_old_embedded)(settings)
    before = search(capsys, "bosch", "-k", "3")  # a reader (the bot) answers from the old index until the pass
    assert len(before) == 3 and all(m["taken"] is None and m["taken_source"] is None for m in before)
    summary = index_once(settings)
    assert summary.embedded == 0 and summary.upgraded == len(NAMED) and summary.unchanged == len(NAMED)
    assert f"upgraded {len(NAMED)} document(s)" in summary.line()
    found = search(capsys, "bosch", "-k", "3")
    assert found[0]["relative_path"] == "Kunden/Kundenbesuch_Bosch_03.jpg" and "name" in found[0]["matched"]
    assert all(m["taken"] and m["taken_source"] == "mtime" for m in found)
    again = index_once(settings)
    assert again.upgraded == 0 and again.embedded == 0


def test_neighbours_of_an_indexed_image_keep_to_the_dates(settings, capsys):
    from findimage.records import image_id_for
    from findimage.search import Searcher

    for month in (5, 6, 7):
        dated(settings.archive / f"m/{month}.jpg", month, original=f"2024:{month:02d}:10 12:00:00")
    index_once(settings)
    june = query_filters(after="2024-06", before="2024-07")
    result = Searcher(settings).by_image_id(image_id_for("m/5.jpg"), k=5, filters=june)
    assert [m.relative_path for m in result.matches] == ["m/6.jpg"]

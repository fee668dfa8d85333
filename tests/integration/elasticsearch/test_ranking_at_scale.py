"""Text queries on an archive of a thousand photos, on both stores: what a query's words name, in a folder
or file name or on a sign read in a photo, comes first, however sure CLIP is of its own guesses.

CLIP has random weights here and, like the real one, "hub" pictures: a few photos whose vectors lean the
way every text vector leans score high for any query (with real CLIP: busy, generic pictures). Today's
photos have camera file names (DSC_xxxxx.jpg) in folders named after the event; one in ten shows a sign
or a slide whose text was read."""
from __future__ import annotations

import dataclasses
import io
import time

import numpy as np
import pytest
from es_support import both_stores
from PIL import Image

from findimage.backends import open_store
from findimage.records import ImageDoc, ReadText, TextLine, image_id_for
from findimage.search import Searcher
from findimage.stores.base import META_IMAGE_MODEL

PHOTOS = 1000
HUBS = 40
EVENTS = ["Weihnachtsfeier", "Betriebsausflug Harz", "Messe Hannover", "Kundenbesuch Bosch", "Team Offsite",
          "Jubiläum 25 Jahre", "Produktfotos Frühjahr", "Workshop Berlin", "Baustelle Nord", "Richtfest"]
# Folders whose names hold some of the words asked for below.
SOMMERFEST = "2022/events/Sommerfest Biergarten"  # every word of "sommerfest biergarten"
PARTLY = {"2022/events/Biergarten Besuch": 4,  # two of "sommerfest biergarten 2022"
          "2019/events/Sommerfest": 5}  # one of them
KELLERTREPPE = "Baustelle/Kellertreppe Umbau.jpg"
SIGN = "2021/rundgang/DSC_40815.jpg"  # a photo of a sign reading NOTAUSGANG LINKS
SIGNS = {SIGN: ["Bitte freihalten", "NOTAUSGANG LINKS"],
         "2021/rundgang/DSC_40816.jpg": ["NOTAUSGANG"],  # one of the two words
         "2021/rundgang/DSC_40817.jpg": ["Notausgang rechts"],
         "2020/parkplatz/DSC_30001.jpg": ["Links abbiegen", "Ausfahrt freihalten"]}
OTHER_TEXT = ["Kantine geschlossen", "Zutritt nur für Mitarbeiter", "Raum 2.14 Besprechung", "Agenda Q3",
              "Willkommen", "Parken verboten", "Lieferanten bitte klingeln", "Rauchen verboten"]


def tiny_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (90, 120, 160)).save(out, "JPEG")
    return out.getvalue()


def archive_paths() -> list[str]:
    paths = [f"{SOMMERFEST}/DSC_{77001 + i}.jpg" for i in range(3)]
    paths += [f"{folder}/DSC_{5000 + 100 * n + i}.jpg" for n, (folder, count) in enumerate(PARTLY.items())
              for i in range(count)]
    paths += [KELLERTREPPE, *SIGNS]
    i = 0
    while len(paths) < PHOTOS:
        paths.append(f"{2018 + i % 5}/events/{EVENTS[i % len(EVENTS)]}/DSC_{10000 + i}.jpg")
        i += 1
    return paths


@pytest.fixture
def searcher(settings):
    """A thousand photos in the store (written as the indexer would; their files are there), text
    queries searching names and text; the Searcher over them."""
    settings = dataclasses.replace(settings, ocr=True)
    store = open_store(settings, writer=True)
    found = Searcher(settings, store=store)
    rng = np.random.default_rng(11)
    # The direction every text vector leans (the text model's vectors of any sentences share it).
    leaning = found.text_embedder.embed_texts(["a photo", "ein Bild von Menschen", "the building"]).mean(axis=0)
    leaning /= np.linalg.norm(leaning)
    data, docs = tiny_jpeg(), []
    paths = archive_paths()
    hubs = set(rng.choice(np.arange(len(paths)), HUBS, replace=False).tolist())
    for n, path in enumerate(paths):
        vector = rng.standard_normal(512).astype(np.float32)
        vector /= np.linalg.norm(vector)
        if n in hubs:
            vector = vector + 0.4 * leaning
        file = settings.archive / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        stat = file.stat()
        docs.append(ImageDoc(image_id_for(path), file.name, path, vector / np.linalg.norm(vector), f"sha-{n}",
                             stat.st_size, stat.st_mtime, 16, 12, time.time(), found.image_embedder.model_id))
    store.upsert(docs)
    texts = {**SIGNS, **{path: [OTHER_TEXT[n % len(OTHER_TEXT)]] for n, path in enumerate(paths[20::10])}}
    store.set_texts([(image_id_for(path), f"sha-{paths.index(path)}",
                      ReadText("read", tuple(TextLine(line, ((0, 0), (90, 0), (90, 20), (0, 20)), 0.9)
                                             for line in lines)))
                     for path, lines in texts.items()])
    store.set_meta(META_IMAGE_MODEL, found.image_embedder.model_id)
    store.checkpoint()
    yield found
    store.close()


def top(searcher: Searcher, query: str, k: int = 10, skip: int = 0):
    return searcher.by_text(query, k=k, skip=skip).matches


def clip_alone(searcher: Searcher, query: str, k: int = 10):
    plain = Searcher(dataclasses.replace(searcher.settings, hybrid=False), store=searcher.store,
                     text_embedder=searcher.text_embedder, image_embedder=searcher.image_embedder)
    return plain.by_text(query, k=k).matches


@both_stores
def test_a_name_or_a_sign_holding_every_query_word_comes_first_above_clip_s_hubs(searcher):
    guesses = clip_alone(searcher, "sommerfest biergarten", k=5)
    assert not any(SOMMERFEST in m.relative_path for m in guesses), "CLIP alone does not find them"

    found = top(searcher, "sommerfest biergarten", k=5)
    assert {m.relative_path.rsplit("/", 1)[0] for m in found[:3]} == {SOMMERFEST}
    assert [m.score for m in found[:3]] == sorted((m.score for m in found[:3]), reverse=True), "CLIP orders them"
    assert all("name" in m.matched for m in found[:3])
    assert found[0].score < guesses[0].score, "ranked above a higher score: the reason says why"

    [first] = top(searcher, "Kellertreppe Umbau", k=1)
    assert first.relative_path == KELLERTREPPE and "name" in first.matched

    first = top(searcher, "notausgang links", k=3)[0]
    assert (first.relative_path, first.text_snippet) == (SIGN, "NOTAUSGANG LINKS") and "text" in first.matched

    searcher.settings = dataclasses.replace(searcher.settings, weak_score=0.99)  # every CLIP score is weak
    assert not searcher.by_text("notausgang links", k=3).uncertain, "the sign answers the query: no guess"
    assert searcher.by_text("a quiet evening by the water", k=3).uncertain


@both_stores
def test_partial_matches_rank_below_full_ones_by_how_many_words_they_hold(searcher):
    found = top(searcher, "sommerfest biergarten 2022", k=20)
    folders = [m.relative_path.rsplit("/", 1)[0] for m in found]
    assert folders[:3] == [SOMMERFEST] * 3  # every word
    assert folders[3:7] == ["2022/events/Biergarten Besuch"] * 4  # two of the three words
    assert all(f.startswith("2022/") or f == "2019/events/Sommerfest" for f in folders[7:]), "one word"
    assert all("name" in m.matched for m in found)

    signs = [m.relative_path for m in top(searcher, "notausgang links", k=8)]
    assert signs[0] == SIGN
    assert set(signs[1:4]) == set(SIGNS) - {SIGN}, "one of the words on a sign, before what CLIP guessed alone"


@both_stores
def test_a_query_no_name_or_text_matches_keeps_clip_s_order_exactly(searcher):
    for query in ("a quiet evening by the water", "zebra"):
        fused, alone = top(searcher, query), clip_alone(searcher, query)
        assert [(m.relative_path, m.score, m.matched) for m in fused] == [
            (m.relative_path, m.score, ("image",)) for m in alone]


@both_stores
def test_show_more_pages_on_through_the_same_ranking(searcher):
    first, second = top(searcher, "sommerfest biergarten 2022", k=5), \
        top(searcher, "sommerfest biergarten 2022", k=5, skip=5)
    assert [m.relative_path for m in first + second] == [
        m.relative_path for m in top(searcher, "sommerfest biergarten 2022", k=10)]
    assert second[0].relative_path.startswith("2022/events/Biergarten Besuch/")

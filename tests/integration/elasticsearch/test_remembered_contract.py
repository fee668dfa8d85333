"""Images remembered from Slack channels, on both stores: a picture posted in one channel is found by
queries made in that channel and by no other query, however the query is made."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from es_support import both_stores

from findimage.backends import open_remembered, open_store
from findimage.query import QueryError, query_filters
from findimage.records import ImageDoc, Posted, image_id_for, posted_path
from findimage.search import Searcher
from findimage.stores.base import META_IMAGE_MODEL, ChannelState

BASIS = np.linalg.qr(np.random.default_rng(11).standard_normal((512, 8)))[0].T.astype(np.float32)
MODEL = "m1"


def unit(*components: float) -> np.ndarray:
    v = np.asarray(components, np.float32) @ BASIS[: len(components)]
    return v / np.linalg.norm(v)


class Fixed:
    """Both models at once: a query vector chosen by the test (the search code is what is under test)."""

    model_id = MODEL

    def __init__(self):
        self.vector = unit(1, 0)

    def load(self):
        pass

    def embed_texts(self, texts):
        return np.stack([self.vector for _ in texts])


def archive_doc(path: str, vector: np.ndarray, sha: str | None = None) -> ImageDoc:
    return ImageDoc(image_id_for(path), path.rsplit("/", 1)[-1], path, vector, sha or f"sha-{path}", 10, 1.0, 64, 64,
                    time.time(), MODEL, "2024-01-01T00:00:00", "exif_original")


def posting(channel: str, file_id: str, name: str, vector: np.ndarray, sha: str | None = None,
            taken: str = "2026-03-05T10:00:00") -> tuple[ImageDoc, Posted]:
    posted = Posted(channel, file_id, "1772704800.000100", "U0ANNA", f"https://x.slack.com/files/U0ANNA/{file_id}",
                    name)
    doc = ImageDoc(posted.image_id, name, posted_path(channel, file_id, name), vector, sha or f"sha-{file_id}", 10,
                   1.0, 64, 64, time.time(), MODEL, taken, "slack")
    return doc, posted


@pytest.fixture
def world(settings):
    """An archive of two pictures and two remembered channels, #design (C0DESIGN) and #exec (C0EXEC)."""
    store = open_store(settings, writer=True)
    store.upsert([archive_doc("events/stage.jpg", unit(0, 1)), archive_doc("nature/lake.jpg", unit(0, 0, 1))])
    store.set_meta(META_IMAGE_MODEL, MODEL)
    store.checkpoint()
    remembered = open_remembered(settings)
    for channel in ("C0DESIGN", "C0EXEC"):
        remembered.registry.save_channel(ChannelState(channel, "U0ANNA", time.time(), 0.0))
    remembered.add([posting("C0EXEC", "F0SECRET", "whiteboard budget.png", unit(1, 0), sha="same-picture")], MODEL)
    remembered.add([posting("C0DESIGN", "F0LOGO", "logo draft.png", unit(1, 0.3))], MODEL)
    remembered.store.checkpoint()
    model = Fixed()
    # The archive is not mounted here (as for a search from another machine): its documents count as there.
    searcher = Searcher(dataclasses.replace(settings, ocr=False, archive=settings.data_dir / "not-mounted"), store,
                        model, model, remembered)
    yield searcher, remembered, model
    remembered.close()
    store.close()


def paths(result) -> list[str]:
    return [m.relative_path for m in result.matches]


@both_stores
def test_a_query_in_the_channel_finds_its_posted_image_first(world):
    searcher, _, _ = world
    result = searcher.by_text("whiteboard", k=3, channel="C0EXEC")
    assert paths(result)[0] == "C0EXEC/F0SECRET/whiteboard budget.png"
    posted = result.matches[0].posted
    assert (posted.channel, posted.file_id, posted.poster) == ("C0EXEC", "F0SECRET", "U0ANNA")
    assert "C0DESIGN/F0LOGO/logo draft.png" not in paths(result)  # another channel's, though near the query


@both_stores
def test_no_other_query_ever_returns_a_remembered_image(world):
    searcher, _, model = world
    leaks = []
    for channel in (None, "C0DESIGN", "C0OTHER", "D0DIRECT"):
        for result in (searcher.by_text("whiteboard budget", k=10, channel=channel),
                       searcher.by_text("whiteboard", k=10, channel=channel, filters=query_filters(after="2026")),
                       searcher.by_image_id(image_id_for("events/stage.jpg"), k=10, channel=channel)):
            leaks += [p for p in paths(result) if p.startswith("C0EXEC/")]
    assert leaks == []


@both_stores
def test_the_same_picture_posted_elsewhere_does_not_reveal_the_remembered_one(world):
    searcher, remembered, _ = world
    remembered.add([posting("C0DESIGN", "F0TWIN", "twin.png", unit(1, 0), sha="same-picture")], MODEL)
    remembered.store.checkpoint()
    result = searcher.by_text("whiteboard", k=10, channel="C0DESIGN")
    assert "C0DESIGN/F0TWIN/twin.png" in paths(result)
    assert not [p for p in paths(result) if p.startswith("C0EXEC/")]
    assert all(not m.also_at for m in result.matches)


@both_stores
def test_more_like_a_remembered_image_works_in_its_channel_only(world):
    searcher, remembered, _ = world
    secret = Posted("C0EXEC", "F0SECRET", "", "").image_id
    assert searcher.by_image_id(secret, k=3, channel="C0EXEC").matches
    for channel in (None, "C0DESIGN"):
        with pytest.raises(QueryError):
            searcher.by_image_id(secret, k=3, channel=channel)


@both_stores
def test_an_archive_folder_query_leaves_the_channel_out(world):
    searcher, _, _ = world
    result = searcher.by_text("whiteboard", k=5, channel="C0EXEC", filters=query_filters(folder="events"))
    assert paths(result) == ["events/stage.jpg"]


@both_stores
def test_forget_removes_the_channel_and_everything_from_it(world):
    searcher, remembered, _ = world
    assert remembered.forget_channel("C0EXEC") == 1
    assert remembered.channel("C0EXEC") is None
    assert not [p for p in paths(searcher.by_text("whiteboard", k=10, channel="C0EXEC")) if p.startswith("C0EXEC/")]
    assert remembered.registry.posted_in("C0EXEC") == []
    assert remembered.store.get(Posted("C0EXEC", "F0SECRET", "", "").image_id) is None
    assert paths(searcher.by_text("logo", k=1, channel="C0DESIGN")) == ["C0DESIGN/F0LOGO/logo draft.png"]


@both_stores
def test_a_deleted_file_goes_from_every_channel_it_was_remembered_in(world):
    searcher, remembered, _ = world
    remembered.add([posting("C0DESIGN", "F0SECRET", "whiteboard budget.png", unit(1, 0))], MODEL)
    assert remembered.forget_file("F0SECRET") == 2
    for channel in ("C0EXEC", "C0DESIGN"):
        assert "F0SECRET" not in " ".join(paths(searcher.by_text("whiteboard", k=10, channel=channel)))


@both_stores
def test_a_document_without_its_posting_is_never_shown(world):
    searcher, remembered, _ = world
    doc, posted = posting("C0EXEC", "F0HALF", "half written.png", unit(1, 0))
    remembered.store.upsert([doc])  # the posting's write failed
    remembered.store.checkpoint()
    assert "C0EXEC/F0HALF/half written.png" not in paths(searcher.by_text("whiteboard", k=10, channel="C0EXEC"))
    assert remembered.forget_channel("C0EXEC") == 2  # found by its folder all the same


@both_stores
def test_a_state_saved_after_forget_does_not_turn_the_channel_on_again(world):
    _, remembered, _ = world
    state = remembered.channel("C0EXEC")
    remembered.forget_channel("C0EXEC")
    state.pages += 1  # a backfill page that finished just after the forget
    assert remembered.registry.update_channel(state) is False
    assert remembered.channel("C0EXEC") is None


@both_stores
def test_a_posting_written_while_its_channel_is_forgotten_is_deleted_again(world):
    searcher, remembered, _ = world
    remembered.forget_channel("C0EXEC")
    late = posting("C0EXEC", "F0LATE", "late.png", unit(1, 0))  # made before the forget, written after it
    remembered.add([late], MODEL)
    assert remembered.store.get(late[1].image_id) is None and remembered.registry.posted_in("C0EXEC") == []

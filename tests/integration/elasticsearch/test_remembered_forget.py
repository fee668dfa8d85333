"""Forgotten means gone: after `/findimage forget`, a file's deletion in Slack or a deleted message, none
of the forgotten images' words, read text or vectors is left in any file of the data folder (embedded
store), and no search finds them any more, whatever process makes it (Elasticsearch), as an admin or a
security reviewer would check."""
from __future__ import annotations

import time

import numpy as np
import pytest
from es_support import es_only
from leftovers import found_in_files, needles

from findimage.backends import open_remembered
from findimage.records import ImageDoc, Posted, ReadText, TextLine, posted_path
from findimage.remembered import Remembered
from findimage.stores.base import ChannelState

MODEL = "m1"
BOX = ((0, 0), (90, 0), (90, 12), (0, 12))
# The secret posting: words no other document holds, in its title, its file name and the text read in it.
SECRET_FILE = "F0SECRETQX"
SECRET_TITLE = "Quokkamarzipan offsite"
SECRET_NAME = "Zanzibarfjord plan.png"
SECRET_LINES = ("Geheimprojekt Überraschung", "XYLOPHONETTI budget 2027")
SECRET_WORDS = ("Quokkamarzipan", "Zanzibarfjord", "Geheimprojekt", "Überraschung", "XYLOPHONETTI")


def unit_vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def posting(channel: str, file_id: str, title: str, name: str, vector: np.ndarray) -> tuple[ImageDoc, Posted]:
    """As bot/remembering.py makes one: the title's words as a folder of their own beside the file name."""
    posted = Posted(channel, file_id, "1772704800.000100", "U0ANNA", f"https://x.slack.com/files/U0ANNA/{file_id}",
                    title)
    path = posted_path(channel, file_id, f"{title}/{name}" if title != name else name)
    doc = ImageDoc(posted.image_id, name, path, vector, f"sha-{file_id}", 10, 1.0, 64, 64, time.time(), MODEL,
                   "2026-03-05T10:00:00", "slack")
    return doc, posted


def reading(*lines: str) -> ReadText:
    return ReadText("read", tuple(TextLine(line, BOX, 0.9) for line in lines))


def remember(remembered: Remembered, *postings: tuple[ImageDoc, Posted, tuple[str, ...]]) -> None:
    """As the bot does: searchable by picture and name first, then with the text read in it."""
    remembered.add([(doc, posted) for doc, posted, _ in postings], MODEL)
    remembered.store.set_texts([(doc.image_id, doc.sha256, reading(*lines)) for doc, _, lines in postings])


def secret_needles(vector: np.ndarray) -> dict[str, bytes]:
    return needles((*SECRET_WORDS, SECRET_FILE), [vector])


@pytest.fixture
def channels(settings):
    """#exec (C0EXEC) with the secret posting among ordinary ones, and #design (C0DESIGN) beside it; a kNN
    snapshot saved meanwhile, as a checkpoint saves one."""
    remembered = open_remembered(settings)
    for channel in ("C0EXEC", "C0DESIGN"):
        remembered.registry.save_channel(ChannelState(channel, "U0ANNA", time.time(), 0.0))
    secret = posting("C0EXEC", SECRET_FILE, SECRET_TITLE, SECRET_NAME, unit_vector(1))
    ordinary = [(*posting("C0EXEC", f"F0EXEC{i}", f"whiteboard {i}", f"board {i}.png", unit_vector(100 + i)),
                 (f"meeting notes {i}", "agenda and lunch")) for i in range(30)]
    ordinary += [(*posting("C0DESIGN", f"F0LOGO{i}", "logo draft", f"logo {i}.png", unit_vector(200 + i)),
                  ("brand colours",)) for i in range(30)]
    remember(remembered, (*secret, SECRET_LINES))  # one posting at a time, as they come
    remember(remembered, *ordinary)
    remembered.store.checkpoint()
    assert remembered.store.knn(secret[0].image_embedding, 1)[0].image_id == secret[0].image_id
    yield remembered, secret
    remembered.close()


def assert_nothing_left(settings, remembered: Remembered, vector: np.ndarray) -> None:
    needles = secret_needles(vector)
    assert found_in_files(settings.data_dir, needles) == [], "left while the bot still runs"
    remembered.close()
    assert found_in_files(settings.data_dir, needles) == [], "left after the bot stopped"


def test_a_forgotten_channel_leaves_none_of_its_words_text_or_vectors_in_the_data_folder(settings, channels):
    remembered, (doc, _) = channels
    assert found_in_files(settings.data_dir, secret_needles(doc.image_embedding))  # the check finds them at all

    assert remembered.forget_channel("C0EXEC") == 31

    assert_nothing_left(settings, remembered, doc.image_embedding)
    reopened = open_remembered(settings)
    try:  # the other channel is as it was
        assert len(reopened.registry.posted_in("C0DESIGN")) == 30 and reopened.store.count() == 30
        assert reopened.store.text_ranking(unit_vector(200), ["brand"], 50)
    finally:
        reopened.close()


def test_a_file_deleted_in_slack_leaves_none_of_its_words_text_or_vector_in_the_data_folder(settings, channels):
    remembered, (doc, _) = channels
    # The same file shared into #design as well: its deletion forgets it in both channels.
    remember(remembered, (*posting("C0DESIGN", SECRET_FILE, SECRET_TITLE, SECRET_NAME, doc.image_embedding),
                          SECRET_LINES))

    assert remembered.forget_file(SECRET_FILE) == 2

    assert_nothing_left(settings, remembered, doc.image_embedding)
    reopened = open_remembered(settings)
    try:  # the channels' other images are as they were
        assert reopened.store.count() == 60 and reopened.channel("C0EXEC") is not None
        assert reopened.store.knn(unit_vector(100), 1)[0].relative_path == "C0EXEC/F0EXEC0/whiteboard 0/board 0.png"
    finally:
        reopened.close()


def secret_found(remembered: Remembered, doc: ImageDoc) -> list[str]:
    """Where a search or look-up of this process still finds the secret posting."""
    store, found = remembered.store, []
    if store.get(doc.image_id) is not None:
        found.append("get")
    if doc.image_id in {m.image_id for m in store.knn(doc.image_embedding, 5)}:
        found.append("knn")
    by_image, by_name = store.hybrid(doc.image_embedding, ["quokkamarzipan", "zanzibarfjord"], 5)
    if doc.image_id in {m.image_id for m in by_name}:
        found.append("name")
    if doc.image_id in {m.image_id for m in store.text_ranking(doc.image_embedding, ["geheimprojekt"], 5)}:
        found.append("text")
    if remembered.registry.posted([doc.image_id]):
        found.append("posting")
    return found


@pytest.fixture
def replicas(settings, channels):
    """Two bot replicas on Elasticsearch: the one that forgets (not even asked to share its writes) and
    another one that searches. Elasticsearch's periodic refresh is off, so only what the store does
    itself can make a forget visible to the other one."""
    remembered, secret = channels
    client = remembered.store.client
    client.indices.put_settings(index=remembered.store.alias, settings={"refresh_interval": "-1"})
    other = open_remembered(settings)
    assert secret_found(other, secret[0]) == ["get", "knn", "name", "text", "posting"]
    yield Remembered(remembered.store, remembered.registry), other, secret[0]
    other.close()


@es_only
def test_on_elasticsearch_a_forgotten_channel_is_gone_from_every_replica_at_once(replicas):
    forgetting, other, doc = replicas
    assert forgetting.forget_channel("C0EXEC") == 31
    assert secret_found(other, doc) == []
    assert secret_found(forgetting, doc) == []


@es_only
def test_on_elasticsearch_a_file_deleted_in_slack_is_gone_from_every_replica_at_once(replicas):
    forgetting, other, doc = replicas
    assert forgetting.forget_file(SECRET_FILE) == 1
    assert secret_found(other, doc) == []
    assert secret_found(forgetting, doc) == []
    assert len(other.registry.posted_in("C0EXEC")) == 30


def keep_waiting_work(remembered: Remembered) -> None:
    """What the journal may hold when the app is uninstalled: a posting with the secret title waiting to be
    remembered, and a deleted file's record."""
    from findimage.stores.base import REMEMBER, Pending

    waiting = {"type": "message", "channel": "C0EXEC", "ts": "1772704900.000100", "user": "U0ANNA",
               "files": [{"id": "F0WAITING", "title": SECRET_TITLE, "name": SECRET_NAME}]}
    remembered.registry.keep([Pending("Ev0WAITING", REMEMBER, waiting, time.time())])
    remembered.forget_deleted([SECRET_FILE + "-old"])


def test_an_uninstall_leaves_nothing_from_slack_in_the_data_folder(settings, channels):
    remembered, (doc, _) = channels
    keep_waiting_work(remembered)
    # A document whose posting was lost (a failed write) is deleted too.
    lost = posting("C0DESIGN", "F0LOST", "lost", "lost.png", unit_vector(300))[0]
    remembered.store.upsert([lost])

    assert remembered.forget_everything() == (2, 62)

    assert_nothing_left(settings, remembered, doc.image_embedding)
    design = needles(("logo draft", "brand colours", "C0DESIGN", "F0LOST"), [unit_vector(200), unit_vector(300)])
    assert found_in_files(settings.data_dir, design) == []
    reopened = open_remembered(settings)
    try:
        assert reopened.registry.channels() == [] and reopened.registry.backlog() == {}
        assert reopened.store.count() == 0 and reopened.registry.posted_in("C0EXEC") == []
    finally:
        reopened.close()


@es_only
def test_on_elasticsearch_an_uninstall_leaves_no_document_in_its_slack_indices(replicas):
    forgetting, other, doc = replicas
    keep_waiting_work(forgetting)

    assert forgetting.forget_everything() == (2, 61)

    assert secret_found(other, doc) == []
    es = forgetting.store.client
    for index in (forgetting.store.alias, forgetting.registry.index):
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == 0, index
    assert other.registry.channels() == [] and other.registry.backlog() == {}

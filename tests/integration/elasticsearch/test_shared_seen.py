"""Seen keys shared through Elasticsearch (`<alias>-seen`), on the real test server: exactly one `True`
per key across processes asking at once, an hour of memory, purging, and memory when the server is gone."""
from __future__ import annotations

import logging
import socket
import threading

import pytest
from bot_support import FakeClock
from es_support import ES_URL, client, needs_es, scratch_name

from bot.dedupe import SeenRecently, seen_keys
from findimage.config import load_settings
from findimage.stores.elasticsearch.seen import SharedSeen, doc_id, seen_index

pytestmark = needs_es


@pytest.fixture
def alias():
    name = scratch_name("seen")
    yield name
    with client() as es:
        es.indices.delete(index=seen_index(name), ignore_unavailable=True)


def shared(alias: str, clock=None, url: str | None = None) -> SharedSeen:
    url = url or ES_URL
    return SharedSeen(client(url), alias, SeenRecently(), url=url, **({"clock": clock} if clock else {}))


def test_a_key_is_new_once_whichever_replica_asks(alias):
    one, two = shared(alias), shared(alias)
    assert one.first_time("event:Ev1") is True
    assert two.first_time("event:Ev1") is False
    assert one.first_time("event:Ev1") is False
    assert two.first_time("file:C1:F1") is True and one.first_time("file:C1:F1") is False


def test_of_many_threads_in_two_replicas_asking_at_once_exactly_one_answers(alias):
    replicas = [shared(alias), shared(alias)]
    replicas[0].first_time("warm-up")  # the index exists before the race
    start = threading.Barrier(20)
    answers: list[bool] = []

    def ask(n: int) -> None:
        start.wait()
        answers.append(replicas[n % 2].first_time("event:EvRACE"))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * 19 + [True]


def test_a_key_is_remembered_for_an_hour_then_answered_again_once(alias):
    clock = FakeClock()
    one, two = shared(alias, clock), shared(alias, clock)
    assert one.first_time("file:C1:F9")
    clock.advance(3599)
    assert not two.first_time("file:C1:F9")
    clock.advance(2)  # older than the TTL but not purged yet: re-taken by exactly one replica
    assert [one.first_time("file:C1:F9"), two.first_time("file:C1:F9")] == [True, False]


def test_keys_older_than_an_hour_are_purged(alias):
    clock = FakeClock()
    seen = shared(alias, clock)
    for n in range(5):
        assert seen.first_time(f"event:old-{n}")
    clock.advance(1800)
    assert seen.first_time("event:recent")
    clock.advance(1801)
    seen.purge(wait=True)
    assert seen.count() == 1, "only the key younger than an hour is left"
    assert not seen.first_time("event:recent")


def test_long_keys_are_stored_under_a_hash():
    assert doc_id("event:Ev1") == "event:Ev1"
    long_key = "interaction:" + "x" * 600
    assert doc_id(long_key).startswith("sha256:") and len(doc_id(long_key)) < 100


def test_without_elasticsearch_each_call_falls_back_to_memory_and_says_so(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    seen = shared("unreachable", url=f"http://127.0.0.1:{closed}")
    with caplog.at_level(logging.WARNING, logger="findimage.stores.elasticsearch.seen"):
        assert seen.first_time("event:EvDOWN") is True, "answering twice is better than not answering"
        assert seen.first_time("event:EvDOWN") is False, "this process still remembers it"
    assert "using this process's memory for event:EvDOWN" in caplog.text


def test_the_store_setting_chooses_the_implementation(tmp_path, alias):
    embedded = load_settings({"FINDIMAGE_DATA_DIR": str(tmp_path)}, env_file=None)
    assert isinstance(seen_keys(embedded), SeenRecently)
    on_es = load_settings({"ELASTICSEARCH_URL": ES_URL, "FINDIMAGE_INDEX": alias}, env_file=None)
    chosen = seen_keys(on_es)
    assert isinstance(chosen, SharedSeen) and chosen.index == f"{alias}-seen"
    assert chosen.first_time("event:EvFACTORY") and not shared(alias).first_time("event:EvFACTORY")


def test_an_uninstall_forgets_every_key_for_every_replica(alias):
    one, two = shared(alias), shared(alias)
    assert one.first_time("event:Ev1") and one.first_time("file:C1:F1")
    two.forget_all()
    assert one.first_time("event:Ev1") is True and two.first_time("file:C1:F1") is True
    with client() as es:
        es.indices.refresh(index=seen_index(alias))
        assert es.count(index=seen_index(alias))["count"] == 2  # the two asked again just now, no others

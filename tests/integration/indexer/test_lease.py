"""The indexing lease in Elasticsearch (`<alias>-lease`), on the real test server: one pass at a time on
an index whatever data folder or machine it runs from, the holder named, and a holder killed with -9
taken over after the lease expires, without anyone removing it by hand."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from bot_support import FakeClock
from es_support import client, es_only

from findimage.stores.elasticsearch.lease import (
    LEASE_ID,
    LeaseDocument,
    LeaseHeld,
    ProcessId,
    lease_index,
    process_scope,
)
from indexer.lock import pass_guard
from indexer.schedule import run_locked_pass

# A pass "on another machine" (its own host name and boot: only the expiry frees its lease) that stops
# after its first batch is written and waits forever: "mid-pass" for as long as the test needs, without
# depending on how fast the pass would otherwise be.
STALLED_PASS = textwrap.dedent("""
    import socket, sys, time
    from pathlib import Path
    from findimage.stores.elasticsearch import lease as es_lease
    from findimage.stores.elasticsearch.store import ElasticsearchStore

    socket.gethostname = lambda: "indexer-elsewhere"
    es_lease.process_scope = lambda: "another-machine"

    gate, written = Path(sys.argv[1]), ElasticsearchStore.upsert

    def upsert_then_stall(self, docs):
        written(self, docs)
        self.checkpoint()
        gate.joinpath("wrote").touch()
        while True:
            time.sleep(3600)

    ElasticsearchStore.upsert = upsert_then_stall
    from findimage_cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.fixture
def lease_alias(env):
    return env["FINDIMAGE_INDEX"]  # the lease index goes with the test's index (es_support.drop)


def lease_of(alias: str, clock=None, host: str = "indexer-a", pid: int = 4242, seconds: float = 60,
             scope: str | None = None) -> LeaseDocument:
    """A lease as taken on machine `host` (its own boot and pid namespace, unless `scope` says otherwise)."""
    return LeaseDocument(client(), alias, seconds, clock=clock or FakeClock(),
                         process=ProcessId(host, pid, f"boot-of-{host}" if scope is None else scope))


@es_only
def test_the_lease_names_its_holder_and_is_taken_over_only_after_it_expires(lease_alias):
    clock = FakeClock(time.mktime((2026, 3, 1, 14, 5, 0, 0, 0, -1)))
    first = lease_of(lease_alias, clock, "indexer-a", 4242, seconds=60)
    first.acquire()
    try:
        second = lease_of(lease_alias, clock, "indexer-b", 777, seconds=60)
        with pytest.raises(LeaseHeld) as held:
            second.acquire()
        assert str(held.value) == ("Another indexing pass is running on host indexer-a (pid 4242, since "
                                   "2026-03-01 14:05:00); not starting a second one.")
        assert first.renew(), "the holder renews its own lease"
        clock.advance(59)
        with pytest.raises(LeaseHeld):
            second.acquire()
        clock.advance(2)  # the holder stopped renewing more than a lease ago
        second.acquire()
        try:
            assert second.holder().host == "indexer-b"
            assert not first.renew(), "the old holder learns that it lost the lease"
        finally:
            second.release()
        assert second.holder() is None
    finally:
        first._stop.set()


@es_only
def test_on_the_holders_own_machine_a_killed_holder_is_taken_over_at_once(lease_alias):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs, as a holder killed with -9 leaves it
    here = process_scope()
    dead = lease_of(lease_alias, host="this-machine", pid=gone.pid, scope=here)
    dead.acquire()
    dead._stop.set()
    alive = lease_of(lease_alias, host="this-machine", pid=os.getpid(), scope=here)
    alive.acquire()  # no waiting for the expiry: the holder's pid is gone from this very machine
    try:
        with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}"):  # a live holder is never taken over early
            lease_of(lease_alias, host="this-machine", pid=4242, scope=here).acquire()
    finally:
        alive.release()


@es_only
def test_a_scheduled_pass_is_skipped_while_another_machine_holds_the_lease(settings, lease_alias):
    calls = []
    with lease_of(lease_alias, host="other-machine", clock=FakeClock()):
        assert run_locked_pass(
            settings.data_dir, lambda held: calls.append("ran"), lambda: pass_guard(settings)
        ) is None
    assert calls == []
    assert run_locked_pass(settings.data_dir, lambda held: "done", lambda: pass_guard(settings)) == "done"


@es_only
def test_a_pass_opens_its_index_for_writing_once_before_it_takes_the_lease(settings, archive, monkeypatch):
    """Credentials that may not index fail in the store's sentence, and the pass writes through that one store."""
    from findimage.stores.elasticsearch.index import IndexLayout
    from findimage.stores.elasticsearch.lease import ElasticsearchPassLease
    from indexer.run import index_once

    steps = []
    opening, taking = IndexLayout.open_for_writing, ElasticsearchPassLease.take
    monkeypatch.setattr(IndexLayout, "open_for_writing", lambda self: steps.append("index opened") or opening(self))
    monkeypatch.setattr(ElasticsearchPassLease, "take", lambda self: steps.append("lease taken") or taking(self))
    assert index_once(settings, progress=False).added == 7
    assert steps == ["index opened", "lease taken"]


def _findimage(env: dict, data_dir, *args: str, argv=None) -> subprocess.Popen:
    return subprocess.Popen(argv or [sys.executable, "-m", "findimage_cli", *args],
                            env={**os.environ, **env, "FINDIMAGE_DATA_DIR": str(data_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@es_only
def test_two_indexers_with_other_data_folders_one_runs_and_a_killed_one_is_taken_over(env, archive, lease_alias,
                                                                                      tmp_path):
    env = {**env, "FINDIMAGE_BATCH_SIZE": "2", "FINDIMAGE_LEASE_SECONDS": "3"}
    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "stalled_pass.py"
    script.write_text(STALLED_PASS)
    holder = _findimage(env, tmp_path / "data-a", argv=[sys.executable, str(script), str(gate), "index"])
    try:
        while not (gate / "wrote").exists():  # the holder wrote its first batch and stalls mid-pass
            assert holder.poll() is None, holder.communicate()
            time.sleep(0.05)

        second = _findimage(env, tmp_path / "data-b", "index")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1, (out, err)
        assert err.startswith(f"findimage: Another indexing pass is running on host indexer-elsewhere "
                              f"(pid {holder.pid}, since "), err
        status = _findimage(env, tmp_path / "data-b", "status")
        out, _ = status.communicate(timeout=120)
        assert f"indexing:     running on host indexer-elsewhere (pid {holder.pid}, since " in out

        os.killpg(holder.pid, signal.SIGKILL)  # no release, no last renewal
        holder.wait()
        with client() as es:
            expires_at = es.get(index=lease_index(lease_alias), id=LEASE_ID)["_source"]["expires_at"]
        while time.time() <= expires_at:  # the dead holder's lease lapses by itself
            time.sleep(0.05)

        takeover = _findimage(env, tmp_path / "data-b", "index")
        out, err = takeover.communicate(timeout=180)
        assert takeover.returncode == 0, (out, err)
        assert out.startswith("added 5, updated 0, moved 0, removed 0, unchanged 2"), out
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    with client() as es:
        es.indices.refresh(index=lease_alias)
        hits = es.search(index=lease_alias, size=100, source=["relative_path"])["hits"]["hits"]
        assert not es.exists(index=lease_index(lease_alias), id=LEASE_ID), "released at the end of the pass"
    paths = sorted(hit["_source"]["relative_path"] for hit in hits)
    assert len(paths) == 7 and len(set(paths)) == 7, "every photo exactly once"

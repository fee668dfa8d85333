"""What running several replicas on Elasticsearch costs: the shared de-duplication per event, and how
long an indexing lease whose holder died keeps the next pass out.

    .venv/bin/python -m benchmarks.replicas --es http://127.0.0.1:9250 [--calls 500] [--lease 3]

1. `first_time(key)` latency, p50/p95/max over `--calls` new keys and as many repeated keys (Slack's
   retries), through the shared `<alias>-seen` index (SharedSeen) and, as the baseline, in process
   memory (SeenRecently).
2. A lease of `--lease` seconds whose holder stops renewing (as a process killed with -9 does): the
   time from its last renewal until another indexer's acquire() succeeds when it retries every 50 ms,
   and the duration of that successful take-over request.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from dataclasses import replace

from elasticsearch import Elasticsearch

from bot.dedupe import SeenRecently
from findimage.stores.elasticsearch.lease import LeaseDocument, LeaseHeld, ProcessId, lease_index
from findimage.stores.elasticsearch.seen import SharedSeen, seen_index


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3), "calls": len(ordered)}


def _timed(seen, keys: list[str]) -> list[float]:
    samples = []
    for key in keys:
        started = time.perf_counter()
        seen.first_time(key)
        samples.append(time.perf_counter() - started)
    return samples


def seen_latency(url: str, alias: str, calls: int) -> dict:
    shared = SharedSeen(Elasticsearch(url), alias, SeenRecently(), url=url)
    shared.first_time("warm-up")  # index creation and connection set-up are not per event
    keys = [f"event:Ev{n:06d}" for n in range(calls)]
    results = {}
    for name, seen in (("elasticsearch", shared), ("memory", SeenRecently())):
        results[name] = {"new keys": _summary(_timed(seen, keys)), "repeated keys": _summary(_timed(seen, keys))}
    return results


def lease_takeover(url: str, alias: str, seconds: float) -> dict:
    dead = LeaseDocument(Elasticsearch(url), alias, seconds, process=replace(ProcessId.this(), host="dead-holder"))
    dead.acquire()
    dead._stop.set()  # no more renewals, no release: what kill -9 leaves behind
    dead._thread.join()
    last_renewal = time.time()
    taker = LeaseDocument(Elasticsearch(url), alias, seconds, process=replace(ProcessId.this(), host="next-pass"))
    attempts = 0
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            taker.acquire()
            break
        except LeaseHeld:
            time.sleep(0.05)
    request = time.perf_counter() - started
    waited = time.time() - last_renewal
    taker.release()
    return {"lease_seconds": seconds, "taken_over_after_s": round(waited, 3), "attempts": attempts,
            "takeover_request_ms": round(request * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--es", required=True)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args()
    alias = f"bench-replicas-{uuid.uuid4().hex[:8]}"
    try:
        results = {"first_time": seen_latency(args.es, alias, args.calls),
                   "lease": lease_takeover(args.es, alias, args.lease)}
    finally:
        with Elasticsearch(args.es) as es:
            es.indices.delete(index=[seen_index(alias), lease_index(alias)], ignore_unavailable=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

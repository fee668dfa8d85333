"""Reading a findimage process's /metrics, /healthz and /readyz as Prometheus and a router would."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def scrape(base_url: str) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client's own parser: (name, labels) -> value."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=20) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 where the series does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(base_url: str, done, timeout: float = 30.0) -> Samples:
    """Scrapes until `done(samples)` holds (counters move after the answer is delivered); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base_url)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("the metrics never got there")
        time.sleep(0.1)


def get(base_url: str, path: str) -> tuple[int, object]:
    """(status, body) of a GET: JSON parsed, text as it is."""
    try:
        with urllib.request.urlopen(f"{base_url}{path}", timeout=20) as answer:
            status, kind, body = answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        status, kind, body = error.code, error.headers["Content-Type"], error.read()
    return status, json.loads(body) if kind == "application/json" else body.decode()


def wait_for_answer(base_url: str, path: str, expected, timeout: float = 60.0) -> tuple[int, object]:
    """GET `path` until it answers `expected` (status, body); fails with the last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = get(base_url, path)
        except OSError as exc:  # not listening yet
            answer = (0, str(exc))
        if answer == expected:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} answered {answer}, not {expected}")
        time.sleep(0.2)

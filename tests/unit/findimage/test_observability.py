"""The pieces every monitored process shares: labels from fixed sets, readiness probed in the background,
the pages /healthz and /readyz answer, and the monitoring server's settings."""
from __future__ import annotations

import json
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from findimage import __version__
from findimage.config import ConfigError, load_settings
from findimage.observability import (
    ARCHIVE_MISSING,
    STARTING,
    STORE_DOWN,
    FixedLabels,
    MonitoringServer,
    Readiness,
    Ready,
    health_page,
    probe_store,
    readiness_page,
)


def test_every_declared_series_exists_at_zero_and_a_value_outside_its_set_counts_as_other():
    registry = CollectorRegistry()
    requests = FixedLabels(Counter("requests", "", ["kind", "outcome"], registry=registry),
                           {"kind": ("command", "button"), "outcome": ("answered", "failed")})
    requests.labels(kind="command", outcome="answered").inc()
    requests.labels(kind="#general: my secret query", outcome="answered").inc()

    text = generate_latest(registry).decode()
    assert 'requests_total{kind="command",outcome="answered"} 1.0' in text
    assert 'requests_total{kind="button",outcome="failed"} 0.0' in text
    assert 'requests_total{kind="other",outcome="answered"} 1.0' in text
    assert "secret" not in text and "general" not in text


def test_readiness_is_starting_until_watched_then_follows_its_probe_and_a_failing_probe_is_a_store_down():
    now = [0.0]
    answers = [Ready(True, "Ready: 3 documents in the archive.", 3)]

    def probe() -> Ready:
        if not answers:
            raise ConnectionError("http://elastic:secret@es:9200 refused")
        return answers[0]

    readiness = Readiness(clock=lambda: now[0])
    assert readiness.status() == STARTING
    readiness.watch(probe)  # the first probe, waited for
    assert readiness.status() == answers[0]
    answers.clear()
    now[0] += 5.0  # stale: probed again
    readiness.start()
    assert readiness.status() == STORE_DOWN


def test_the_probe_checks_the_archive_before_the_store_and_names_neither(tmp_path):
    counted = []
    missing = probe_store(lambda: counted.append(1) or 1, tmp_path / "not-mounted")
    down = probe_store(lambda: 1 // 0, tmp_path)
    ready = probe_store(lambda: 1234, tmp_path)

    assert (missing, counted) == (ARCHIVE_MISSING, [])
    assert down == STORE_DOWN and str(tmp_path) not in missing.sentence + down.sentence
    assert ready == Ready(True, "Ready: 1,234 documents in the archive.", 1234)


def test_health_is_always_ok_with_the_version_and_readiness_is_one_sentence():
    status, kind, body = health_page(queued=2)
    assert (status, kind, json.loads(body)) == ("200 OK", "application/json",
                                                {"status": "ok", "version": __version__, "queued": 2})
    assert readiness_page(STORE_DOWN) == ("503 Service Unavailable", "text/plain; charset=utf-8",
                                          b"Not ready: the store is not answering.\n")


def test_a_metrics_port_in_use_stops_the_start_with_one_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            MonitoringServer("127.0.0.1", port, Readiness())

    assert refused.value.problems == [f"FINDIMAGE_METRICS_PORT={port} cannot be served on 127.0.0.1 (Address already "
                                      "in use): choose a free port (or unset FINDIMAGE_METRICS_PORT)."]


def test_the_monitoring_server_answers_its_three_paths_and_nothing_else():
    import urllib.error
    import urllib.request

    server = MonitoringServer("127.0.0.1", 0, Readiness())
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            alive = answer.status
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        with pytest.raises(urllib.error.HTTPError) as starting:
            urllib.request.urlopen(f"{base}/readyz", timeout=10)
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"{base}/slack/events", timeout=10)
    finally:
        server.close()

    assert alive == 200 and "# TYPE" in metrics
    assert (starting.value.code, starting.value.read()) == (503, b"Not ready: the models are still loading.\n")
    assert elsewhere.value.code == 404


@pytest.mark.parametrize(("values", "problem"), [
    ({"FINDIMAGE_METRICS_PORT": "metrics"}, "FINDIMAGE_METRICS_PORT='metrics' is not a whole number."),
    ({"FINDIMAGE_METRICS_PORT": "0"}, "FINDIMAGE_METRICS_PORT=0 must be between 1 and 65535."),
    ({"FINDIMAGE_METRICS_HOST": "every interface"},
     "FINDIMAGE_METRICS_HOST='every interface' must be an IP address (e.g. 0.0.0.0 for every interface, 127.0.0.1 "
     "for this machine only) or a host name."),
])
def test_a_bad_metrics_setting_is_one_sentence(values, problem):
    with pytest.raises(ConfigError) as refused:
        load_settings(values, env_file=None)
    assert refused.value.problems == [problem]


def test_the_metrics_settings_default_to_no_server_on_every_interface():
    settings = load_settings({}, env_file=None)
    assert (settings.metrics_port, settings.metrics_host) == (None, "0.0.0.0")
    assert load_settings({"FINDIMAGE_METRICS_PORT": "9101", "FINDIMAGE_METRICS_HOST": "::1"},
                         env_file=None).metrics_port == 9101

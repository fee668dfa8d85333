"""Shared fixtures: generated offline test models, settings pointing at temporary folders, photo archives."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the emulator, photos and helpers

import es_support  # noqa: E402
from photos import save_photo  # noqa: E402

from findimage.config import load_settings  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _umask_kept():
    """`findimage` entry points run in-process set the private umask (findimage.process); the next test
    starts with the session's own."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


@pytest.fixture(autouse=True)
def _torch_threads_kept():
    """A model loaded in-process with FINDIMAGE_TORCH_THREADS (findimage.models.runtime) changes torch's
    thread count for the whole process: the next test starts with the session's own."""
    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and saved is not None and torch.get_num_threads() != saved:
        torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def test_models() -> dict[str, Path]:
    """Random-weight models in the real sentence-transformers layout (`image`, `text`) and in immich's ONNX layout
    (`clip-onnx`, `siglip-onnx`, `mclip-onnx`); tiny variant, built offline."""
    return _load_script("make_test_models").ensure_models("tiny")


@pytest.fixture
def env(request, tmp_path, test_models) -> dict[str, str]:
    """Environment for a findimage process working on a temporary archive and data folder.

    Embedded store by default; `@both_stores` (es_support) runs a test on each store, the
    Elasticsearch one on a fresh index (alias) that is deleted afterwards.
    """
    values = {
        "FINDIMAGE_ARCHIVE": str(tmp_path / "archive"),
        "FINDIMAGE_DATA_DIR": str(tmp_path / "data"),
        "FINDIMAGE_IMAGE_MODEL": str(test_models["image"]),
        "FINDIMAGE_TEXT_MODEL": str(test_models["text"]),
        "FINDIMAGE_BATCH_SIZE": "8",
        # Reading text costs seconds per pass (a child process loads the reader): on only in the tests of
        # text in images, which turn it on themselves.
        "FINDIMAGE_OCR": "off",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    (tmp_path / "archive").mkdir()
    if getattr(request, "param", "embedded") == "elasticsearch":
        with es_support.scratch_index() as (url, alias):
            yield {**values, "ELASTICSEARCH_URL": url, "FINDIMAGE_INDEX": alias}
    else:
        yield values


@pytest.fixture
def settings(env, monkeypatch):
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(env_file=None)


@pytest.fixture
def archive(settings) -> Path:
    """A small archive: two folders of distinct photos."""
    root = settings.archive
    for i in range(4):
        save_photo(root / "events" / "2024" / f"stage-{i}.jpg", seed=100 + i)
    for i in range(3):
        save_photo(root / "nature" / f"mountain-{i}.png", seed=200 + i, size=(320, 240))
    return root


def pytest_collection_modifyitems(session, config, items):
    """Start slow Elasticsearch set-ups early, in the background, if a collected test needs them."""
    if config.option.collectonly:
        return
    needed = {name for item in items for name in getattr(item, "fixturenames", ())}
    if es_support.ES_URL and "second_server" in needed:
        es_support.SecondServer.start_in_background()
    if es_support.ES_URL and "minilm" in needed:
        es_support.TestModel.import_in_background()
    if es_support.ES_URL and "basic_server" in needed:
        es_support.BasicLicenseServer.start_in_background()
    if es_support.ES_URL and "secure_server" in needed:
        es_support.SecureServer.start_in_background()


def pytest_sessionfinish(session, exitstatus):
    es_support.SecondServer.stop()
    es_support.BasicLicenseServer.stop()
    es_support.SecureServer.stop()

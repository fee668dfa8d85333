"""A model of any vector size, on both stores: the store takes its size from the image model when it is made,
refuses a model of another size in the sentence that says to rebuild, and `findimage index --full` re-embeds
into a new store (index) while the old one keeps answering, swapping at the end."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from es_support import both_stores
from photos import save_photo

from findimage.backends import open_store
from findimage.config import load_settings
from findimage.errors import ModelMismatch
from findimage.search import Searcher
from indexer.run import index_once


def _with_model(monkeypatch, env: dict[str, str], folder) -> dict[str, str]:
    changed = {**env, "FINDIMAGE_IMAGE_MODEL": str(folder), "FINDIMAGE_TEXT_MODEL": str(folder)}
    for key, value in changed.items():
        monkeypatch.setenv(key, value)
    return changed


@both_stores
def test_a_768_dim_model_indexes_and_answers_a_text_query(env, monkeypatch, archive, test_models):
    _with_model(monkeypatch, env, test_models["siglip-onnx"])
    settings = load_settings(env_file=None)
    assert index_once(settings).added == 7
    matches = Searcher(settings).by_text("a mountain", k=5).matches
    assert len(matches) == 5
    assert open_store(settings).get(matches[0].image_id).image_embedding.shape == (768,)


@both_stores
def test_switching_to_a_model_of_another_size_is_refused_until_a_full_rebuild_swaps_without_a_failed_query(
        env, monkeypatch, archive, test_models):
    for i in range(24):
        save_photo(archive / "bulk" / f"{i:04d}.jpg", seed=4000 + i, size=(320, 240))
    _with_model(monkeypatch, env, test_models["clip-onnx"])
    old = load_settings(env_file=None)
    assert index_once(old).added == 31

    new_env = _with_model(monkeypatch, env, test_models["siglip-onnx"])
    new = load_settings(env_file=None)
    refusal = "[Rr]un `findimage index --full` to re-embed the archive with"
    with pytest.raises(ModelMismatch, match=refusal):
        index_once(new)
    with pytest.raises(ModelMismatch, match=refusal):
        Searcher(new).by_text("a photo", k=5)

    old_searcher, new_searcher = Searcher(old), Searcher(new)
    proc = subprocess.Popen([sys.executable, "-m", "findimage_cli", "index", "--full"],
                            env={**os.environ, **new_env, "FINDIMAGE_BATCH_SIZE": "4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered_by = []  # which models answered each query, in order
    while proc.poll() is None:
        try:  # the bot with the old models answers until the swap, and is refused (only) after it
            old_searcher.check_model()
            found, by = old_searcher.by_text("a photo", k=100).matches, "old"
        except ModelMismatch:
            found, by = new_searcher.by_text("a photo", k=100).matches, "new"  # any error fails the test here
        assert len(found) == 31, "every query during the rebuild saw the whole archive"
        answered_by.append(by)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith("added 0, updated 31")
    assert answered_by and answered_by[0] == "old", "the old store kept answering while the new one was built"
    assert "old" not in answered_by[answered_by.index("new"):] if "new" in answered_by else True, \
        "one swap: once the new models answered, the old store was gone"
    assert len(new_searcher.by_text("a photo", k=100).matches) == 31
    assert open_store(new).get(new_searcher.by_text("a photo", k=1).matches[0].image_id).image_embedding.size == 768
    assert index_once(new).unchanged == 31

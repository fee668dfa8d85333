"""`findimage doctor`'s core checks on their own: where the models would come from (without loading them),
the data folder, and the exit code of a list of checks."""
from __future__ import annotations

import huggingface_hub.constants
import pytest

from findimage.config import load_settings
from findimage.doctor import Check, data_dir_check, exit_code, fail, model_check, ok, warn
from findimage.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE


def cache_with(tmp_path, repo: str):
    """A Hugging Face hub cache holding `repo` as a download leaves it: refs/main naming a snapshot."""
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "modules.json").write_text("[]")
    (snapshot / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    return tmp_path / "hub"


def test_a_bare_model_name_is_looked_up_as_sentence_transformers_does_in_the_hub_cache(tmp_path):
    cache = cache_with(tmp_path, "sentence-transformers/clip-ViT-B-32")
    check = model_check("image model", "FINDIMAGE_IMAGE_MODEL", "clip-ViT-B-32", cache_dir=cache)
    assert (check.status, check.detail) == ("ok", "sentence-transformers/clip-ViT-B-32: in the Hugging Face cache "
                                                  "(2 MB)")


def test_a_model_not_in_the_cache_is_downloaded_on_first_start_unless_the_hub_is_off(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    check = model_check("text model", "FINDIMAGE_TEXT_MODEL", "sentence-transformers/clip-ViT-B-32-multilingual-v1",
                        cache_dir=empty)
    assert check.status == "warn" and check.detail == (
        "sentence-transformers/clip-ViT-B-32-multilingual-v1 is not in the Hugging Face cache: it is downloaded from "
        "https://huggingface.co/sentence-transformers/clip-ViT-B-32-multilingual-v1 on first start (about 540 MB).")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    check = model_check("text model", "FINDIMAGE_TEXT_MODEL", "someone/other-model", cache_dir=empty)
    assert (check.status, check.exit_code) == ("fail", EXIT_USAGE)
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in check.detail and "FINDIMAGE_TEXT_MODEL" in check.detail


def test_a_model_folder_must_hold_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    assert model_check("image model", "FINDIMAGE_IMAGE_MODEL", str(tmp_path / "empty")).status == "fail"
    assert model_check("image model", "FINDIMAGE_IMAGE_MODEL", str(tmp_path / "a" / "b")).status == "fail"


@pytest.mark.parametrize("where, status", [("data", "ok"), ("new/data", "ok"), ("file/data", "fail")])
def test_the_data_folder_is_there_or_can_be_made(tmp_path, where, status):
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("not a folder")
    check = data_dir_check(load_settings({"FINDIMAGE_DATA_DIR": str(tmp_path / where)}, env_file=None))
    assert check.status == status, check.detail
    assert "FINDIMAGE_DATA_DIR" in check.detail if status == "fail" else "free" in check.detail
    assert not list((tmp_path / "data").iterdir()), "the file written to try is removed"


def test_the_exit_code_is_the_first_failures_and_warnings_alone_exit_0():
    assert exit_code([ok("a", "x"), warn("b", "y")]) == EXIT_OK
    assert exit_code([warn("b", "y"), fail("c", "z", EXIT_UNAVAILABLE), fail("d", "w", EXIT_USAGE)]) == \
        EXIT_UNAVAILABLE
    assert Check("a", "ok", "x").as_json() == {"check": "a", "status": "ok", "detail": "x"}


def test_a_model_in_immichs_layout_is_checked_for_the_side_its_setting_needs(tmp_path, test_models, monkeypatch):
    """A folder needs the side's files; a catalogue name is looked up in the Hugging Face cache as
    immich-app/<name>, without loading anything."""
    folder, text_only = str(test_models["clip-onnx"]), str(test_models["mclip-onnx"])
    found = model_check("image model", "FINDIMAGE_IMAGE_MODEL", folder)
    assert found.status == "ok" and found.detail.startswith(f"{folder}: a local folder in immich's layout (")
    assert found.detail.endswith("run on ONNX Runtime")
    assert model_check("text model", "FINDIMAGE_TEXT_MODEL", text_only).status == "ok"
    missing = model_check("image model", "FINDIMAGE_IMAGE_MODEL", text_only)
    assert missing.status == "fail" and missing.detail == (
        f"FINDIMAGE_IMAGE_MODEL={text_only} is a folder in immich's layout without visual/model.onnx and "
        "visual/preprocess_cfg.json: point it at a folder that has them.")

    cache = tmp_path / "hub"
    snapshot = cache / "models--immich-app--ViT-B-32__openai" / "snapshots" / ("a" * 40)
    (snapshot / "visual").mkdir(parents=True)
    (snapshot / "visual" / "model.onnx").write_bytes(b"\0" * 3_000_000)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    cached = model_check("image model", "FINDIMAGE_IMAGE_MODEL", "ViT-B-32__openai", cache_dir=cache)
    assert (cached.status, cached.detail) == ("ok", f"immich-app/ViT-B-32__openai@{'a' * 40}: in the Hugging Face "
                                                    "cache (3 MB), run on ONNX Runtime")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    later = model_check("text model", "FINDIMAGE_TEXT_MODEL", "ViT-B-32__openai", cache_dir=cache)
    assert (later.status, later.detail) == ("warn", "immich-app/ViT-B-32__openai is not in the Hugging Face cache: its "
                                                    "textual side is downloaded from "
                                                    "https://huggingface.co/immich-app/ViT-B-32__openai on first start "
                                                    "(sizes: `findimage models`).")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert model_check("text model", "FINDIMAGE_TEXT_MODEL", "ViT-B-32__openai", cache_dir=cache).status == "fail"

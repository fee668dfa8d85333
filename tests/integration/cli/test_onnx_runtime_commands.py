"""An admin switches to a model in immich's layout: the archive is indexed and searched with it on ONNX
Runtime (torch never imported), and `findimage models` shows immich's catalogue and which model is in use."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from bot_support import brute_force_ranking, process_env
from es_support import both_stores
from immich_reference import immich_text_vector

from findimage.config import load_settings
from findimage.models import catalogue
from findimage_cli import EXIT_OK, main

ROOT = Path(__file__).resolve().parents[3]
TORCH_STACK = ("torch", "transformers", "sentence_transformers")


def onnx_env(env: dict[str, str], test_models, model: str = "clip-onnx") -> dict[str, str]:
    """The test environment with one folder in immich's layout for both model settings, CLIP alone ranking."""
    return {**env, "FINDIMAGE_IMAGE_MODEL": str(test_models[model]), "FINDIMAGE_TEXT_MODEL": str(test_models[model]),
            "FINDIMAGE_HYBRID": "off"}


def documents(text: str) -> list:
    """The JSON documents printed one after the other."""
    found, decoder, at = [], json.JSONDecoder(), 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


@both_stores
def test_an_onnx_model_indexes_the_archive_and_answers_queries_without_importing_torch(env, archive, test_models,
                                                                                         tmp_path):
    """The 512-dim CLIP-like model on each store, in a process of its own: `findimage index`, a text
    query and an image query, and not one module of the torch stack loaded on the way."""
    values = onnx_env(env, test_models)
    query = "a concert under red lights"
    script = f"""
import json, sys
from findimage_cli import main
codes = [main(["index"]), main(["search", "--json", "-k", "7", {query!r}]),
         main(["search", "--json", "-k", "3", "--image", {str(archive / "nature" / "mountain-1.png")!r}])]
print(json.dumps({{"codes": codes, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {TORCH_STACK!r})}}))
"""
    done = subprocess.run([sys.executable, "-c", script], env=process_env(values, PYTHONPATH=str(ROOT)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    summary, rest = done.stdout.split("\n", 1)
    by_text, by_image, report = documents(rest)

    assert report == {"codes": [EXIT_OK, EXIT_OK, EXIT_OK], "loaded": []}
    assert summary.startswith("added 7, updated 0,")
    settings = load_settings(values, env_file=None)
    expected = brute_force_ranking(settings, immich_text_vector(test_models["clip-onnx"], query), 7)
    assert [(m["relative_path"], round(m["score"], 4)) for m in by_text] == [(p, round(s, 4)) for p, s in expected]
    assert by_image[0]["relative_path"] == "nature/mountain-1.png" and by_image[0]["score"] > 0.999


def test_the_status_names_the_onnx_model_the_index_was_built_with(env, archive, test_models, capsys, monkeypatch):
    for key, value in onnx_env(env, test_models).items():
        monkeypatch.setenv(key, value)
    assert main(["index"]) == EXIT_OK
    capsys.readouterr()
    assert main(["status"]) == EXIT_OK
    status = capsys.readouterr().out
    model_id = next(line for line in status.splitlines() if line.startswith("image model:"))
    assert model_id.startswith("image model:  clip-onnx@") and model_id.endswith(")")
    built_with = model_id.split()[2]
    assert f"(index built with: {built_with})" in model_id


def test_findimage_models_lists_immichs_catalogue_with_its_figures_and_the_model_in_use(capsys, monkeypatch):
    monkeypatch.setenv("FINDIMAGE_IMAGE_MODEL", "ViT-B-32-SigLIP2-256__webli")
    monkeypatch.setenv("FINDIMAGE_TEXT_MODEL", "ViT-B-32-SigLIP2-256__webli@0123456789abcdef0123456789abcdef01234567")
    assert main(["models"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()

    assert lines[0] == "in use for images: ViT-B-32-SigLIP2-256__webli (ONNX Runtime)"
    assert lines[1] == ("in use for text:   ViT-B-32-SigLIP2-256__webli@0123456789abcdef0123456789abcdef01234567 "
                        "(ONNX Runtime)")
    rows = {line[3:].split()[0]: line for line in lines[4:] if line[:3] in (" * ", "   ") and line.strip()}
    assert set(rows) == {model.name for model in catalogue.MODELS}
    siglip2 = rows["ViT-B-32-SigLIP2-256__webli"].split()
    assert siglip2 == ["*", "ViT-B-32-SigLIP2-256__webli", "768", "multilingual", "3061", "3.31",
                       "73.15", "84.44", "82.27", "62.56", "60.70"], "in use, with immich's figures"
    assert rows["ViT-B-32__openai"].split() == ["ViT-B-32__openai", "512", "English", "1004", "2.26",
                                                "59.37", "-", "35.17", "-", "-"]
    assert rows["nllb-clip-base-siglip__mrl"].split()[1:5] == ["768", "about", "200", "(NLLB)"]
    assert sum(line.startswith(" * ") for line in lines) == 1
    assert lines[-1].startswith("Source of memory, time and recall: immich's evaluation") and lines[-1].endswith(
        "https://github.com/immich-app/immich/blob/main/docs/docs/features/searching.md")

    monkeypatch.delenv("FINDIMAGE_IMAGE_MODEL")
    assert main(["models", "--json"]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert listed["in_use"]["image"] == "clip-ViT-B-32" and listed["source"] == catalogue.SOURCE
    by_name = {m["name"]: m for m in listed["models"]}
    assert by_name["ViT-B-32-SigLIP2-256__webli"]["in_use"] == ["text"]
    assert by_name["XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"] == {
        "name": "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
        "hub": "immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", "dims": 512, "languages": "multilingual",
        "memory_mib": 3030, "ms": 3.2, "recall": {"en": 68.33, "de": 81.63, "fr": 79.65, "zh": 72.52, "ar": 59.66},
        "in_use": []}
    assert np.isclose(by_name["ViT-B-32__openai"]["recall"]["en"], 59.37)

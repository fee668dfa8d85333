"""Models in immich's layout on ONNX Runtime: their vectors are the ones immich computes (its resize, crop,
mean/std and tokenizer, reimplemented here as plainly as immich writes them), by folder or by catalogue name
from the Hugging Face cache, on every thread count, in int8 only where it stays faithful."""
from __future__ import annotations

import json
import shutil

import huggingface_hub.constants
import numpy as np
import pytest
from immich_reference import SAME, cosine, immich_image_vector, immich_text_vector
from photos import photo
from PIL import Image

from findimage.config import load_settings
from findimage.errors import ModelError
from findimage.models import factory
from findimage.models.layout import layout_model, model_files
from findimage.models.onnx_clip import TextualEncoder, VisualEncoder
from findimage.models.runtime import RuntimeOptions

PICTURES = {
    "landscape": photo(1, (640, 480)),
    "portrait": photo(2, (333, 517)),
    "small, enlarged": photo(3, (97, 61)),
    "square": photo(4, (300, 300)),
    "with alpha": photo(5, (400, 250)).convert("RGBA"),
    "grey": photo(6, (250, 400)).convert("L"),
    "palette": photo(7, (320, 200)).convert("P"),
    # fine detail: a resize or crop one pixel off changes the vector
    "noise, tall": Image.fromarray(np.random.default_rng(8).integers(0, 256, (517, 333, 3), dtype=np.uint8)),
    "noise, wide": Image.fromarray(np.random.default_rng(9).integers(0, 256, (301, 451, 3), dtype=np.uint8)),
}
TEXTS = ["a snow covered mountain", "  Ein   schneebedeckter\tBerg!  ", "Red ROSES, in a glass vase...",
         "夜の駅のホーム", "une très, très " + "longue " * 120 + "phrase", ""]


def visual(folder, **options) -> VisualEncoder:
    """The visual side at the model level (any vector size; the embedders add the stores' size check)."""
    files = model_files(layout_model(str(folder)), "visual", "FINDIMAGE_IMAGE_MODEL")
    return VisualEncoder(files, RuntimeOptions(**options))


def textual(folder, **options) -> TextualEncoder:
    files = model_files(layout_model(str(folder)), "textual", "FINDIMAGE_TEXT_MODEL")
    return TextualEncoder(files, RuntimeOptions(**options))


@pytest.mark.parametrize("model", ["clip-onnx", "siglip-onnx"])
def test_image_vectors_are_the_ones_immich_computes(test_models, model):
    """CLIP-like: 224 px, shortest side + centre crop, OpenAI's mean/std; SigLIP-like: 256 px squashed,
    mean/std 0.5, 768 dims. Every kind of picture: wide, tall, smaller than the model's side, with alpha,
    grey, a palette."""
    folder = test_models[model]
    vectors = visual(folder).embed(list(PICTURES.values()))
    for (kind, picture), vector in zip(PICTURES.items(), vectors, strict=True):
        assert cosine(vector, immich_image_vector(folder, picture)) >= SAME, kind
    assert vectors.shape[1] == {"clip-onnx": 512, "siglip-onnx": 768}[model]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model", ["clip-onnx", "siglip-onnx", "mclip-onnx"])
def test_text_vectors_are_the_ones_immich_computes(test_models, model):
    """CLIP-like: BPE padded with its end token to 77; SigLIP-like: canonicalized (punctuation dropped,
    lower case), padded to 64; M-CLIP-like: `input_ids` + `attention_mask`. Spaces collapsed, a text far
    longer than the context truncated, an empty one padded."""
    folder = test_models[model]
    vectors = textual(folder).embed(TEXTS)
    for text, vector in zip(TEXTS, vectors, strict=True):
        assert cosine(vector, immich_text_vector(folder, text)) >= SAME, text
    assert cosine(vectors[0], vectors[1]) < 0.999, "different texts, different vectors"


def test_the_image_and_text_settings_run_the_same_folder_on_onnx_runtime(test_models):
    folder = str(test_models["clip-onnx"])
    settings = load_settings({"FINDIMAGE_IMAGE_MODEL": folder, "FINDIMAGE_TEXT_MODEL": folder}, env_file=None)
    options = RuntimeOptions.of(settings)
    images, texts = factory.image_embedder(folder, options), factory.text_embedder(folder, options)

    assert images.model_id == texts.model_id == factory.model_fingerprint(folder)
    assert images.model_id.startswith("clip-onnx@")
    assert factory.runtime_of(folder) == "ONNX Runtime" and factory.runtime_of(str(test_models["image"])) == "torch"
    assert images.image_input_side() == 224
    picture = PICTURES["landscape"]
    assert cosine(images.embed_images([picture])[0], immich_image_vector(test_models["clip-onnx"], picture)) >= SAME
    assert texts.embed_texts(["a cat"]).shape == (1, 512)
    assert factory.image_embedder(folder, options) is images, "one model per process"


def test_shrinking_in_the_decode_threads_does_not_change_the_vector(test_models):
    embedder = factory.image_embedder(str(test_models["clip-onnx"]), RuntimeOptions())
    for kind, picture in PICTURES.items():
        shrunk = embedder.shrink(picture)
        assert min(shrunk.size) <= max(224, min(picture.size)), kind
        assert np.array_equal(embedder.embed_images([shrunk]), embedder.embed_images([picture])), kind
    assert embedder.shrink(PICTURES["landscape"]).size == (298, 224)


def test_a_batch_spread_over_threads_gives_the_vectors_of_one_image_at_a_time(test_models):
    pictures = list(PICTURES.values()) * 2
    alone = np.vstack([visual(test_models["clip-onnx"], threads=1).embed([p]) for p in pictures])
    streamed = visual(test_models["clip-onnx"], threads=3).embed(pictures)
    assert np.array_equal(alone, streamed)


def test_int8_is_used_only_where_it_stays_close_to_the_exact_model(test_models):
    folder = test_models["clip-onnx"]
    exact_images, exact_texts = visual(folder), textual(folder)
    images = visual(folder, quantize="int8", min_cosine=0.5)
    texts = textual(folder, quantize="int8", min_cosine=0.5)
    assert images.quantized and texts.quantized
    assert images.fidelity.probes == 8 and texts.fidelity.probes == 10
    assert images.fidelity.min_cosine > 0.9 and texts.fidelity.min_cosine > 0.9
    pictures = list(PICTURES.values())
    assert not np.array_equal(images.embed(pictures), exact_images.embed(pictures)), "int8 computes differently"
    assert min(np.sum(images.embed(pictures) * exact_images.embed(pictures), axis=1)) > 0.9

    refused = visual(folder, quantize="int8", min_cosine=1.0)
    assert not refused.quantized and refused.fidelity.min_cosine < 1.0
    assert np.array_equal(refused.embed(pictures), exact_images.embed(pictures)), "the exact model answers"
    assert np.array_equal(textual(folder, quantize="int8", min_cosine=1.0).embed(TEXTS), exact_texts.embed(TEXTS))


def test_int8_passes_the_default_fidelity_check_on_a_cpu_without_vnni(test_models):
    """With 8-bit weights the text side fell to 0.970 on this machine's AVX2 (saturating multiply-adds) and
    was refused at the default FINDIMAGE_QUANTIZE_MIN_COSINE (0.99): int8 silently did nothing."""
    folder = test_models["clip-onnx"]
    images, texts = visual(folder, quantize="int8"), textual(folder, quantize="int8")
    assert images.quantized and texts.quantized
    assert images.fidelity.min_cosine > 0.999 and texts.fidelity.min_cosine > 0.999


def test_a_restart_opens_the_int8_copy_instead_of_quantizing_again(test_models, tmp_path, monkeypatch):
    from findimage.models import onnx_runtime

    monkeypatch.setattr(onnx_runtime, "int8_cache", lambda: tmp_path / "int8")
    first = visual(test_models["clip-onnx"], quantize="int8")
    assert first.quantized and len(list((tmp_path / "int8").glob("*.onnx"))) == 1

    def quantizing(path):
        raise AssertionError("quantized again")

    monkeypatch.setattr(onnx_runtime, "_quantized", quantizing)
    again = visual(test_models["clip-onnx"], quantize="int8")
    assert again.quantized, "the kept copy, checked for fidelity as at the first start"
    pictures = list(PICTURES.values())
    assert np.array_equal(again.embed(pictures), first.embed(pictures))
    other_side = textual(test_models["clip-onnx"], quantize="int8")
    assert not other_side.quantized, "the text side has no copy yet (and could not quantize here): not the image's"


def hub_cache(tmp_path, monkeypatch, folder, name: str, commit: str):
    """A Hugging Face cache holding immich-app/<name> as a download leaves it (refs/main naming a snapshot
    named after its commit), with the files of `folder`."""
    repo = tmp_path / "hub" / f"models--immich-app--{name}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_a_catalogue_name_is_fetched_from_the_hub_cache_and_its_revision_recorded(test_models, tmp_path,
                                                                                  monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub_cache(tmp_path, monkeypatch, test_models["clip-onnx"], "ViT-B-32__openai", commit)
    options = RuntimeOptions(threads=1)

    assert factory.model_fingerprint("ViT-B-32__openai") == f"immich-app/ViT-B-32__openai@{commit}"
    images = factory.image_embedder("ViT-B-32__openai", options)
    texts = factory.text_embedder(f"immich-app/ViT-B-32__openai@{commit}", options)
    picture = PICTURES["portrait"]
    assert cosine(images.embed_images([picture])[0], immich_image_vector(test_models["clip-onnx"], picture)) >= SAME
    assert cosine(texts.embed_texts(["a cat"])[0], immich_text_vector(test_models["clip-onnx"], "a cat")) >= SAME
    assert images.model_id == texts.model_id == f"immich-app/ViT-B-32__openai@{commit}"

    other = "f" * 40
    with pytest.raises(ModelError, match=r"^immich-app/ViT-B-32__openai is not in the Hugging Face cache and cannot be "
                                         r"downloaded now \(HF_HUB_OFFLINE=1, or the hub is out of reach\)"):
        factory.image_embedder(f"ViT-B-32__openai@{other}", options).load()
    assert factory.model_fingerprint(f"ViT-B-32__openai@{other}") == f"immich-app/ViT-B-32__openai@{other}"
    assert factory.model_fingerprint("ViT-B-16__openai") == "immich-app/ViT-B-16__openai", "not fetched yet"
    assert factory.runtime_of("ViT-B-16-SigLIP2__webli") == "ONNX Runtime"
    assert factory.runtime_of("sentence-transformers/clip-ViT-B-32-multilingual-v1") == "torch"
    assert factory.runtime_of("someone/ViT-B-32__openai") == "torch", "only immich-app's repositories"


def test_a_model_missing_a_side_or_its_vector_size_is_refused_in_one_sentence(test_models, tmp_path):
    text_only = str(test_models["mclip-onnx"])
    with pytest.raises(ModelError) as refused:
        factory.image_embedder(text_only, RuntimeOptions()).load()
    assert str(refused.value) == (f"FINDIMAGE_IMAGE_MODEL={text_only} has no visual/model.onnx and no "
                                  "visual/preprocess_cfg.json: it cannot serve as the image model (a model in "
                                  "immich's layout has config.json, visual/ and textual/).")

    broken = tmp_path / "broken"
    shutil.copytree(test_models["clip-onnx"], broken)
    (broken / "config.json").write_text(json.dumps({"vision_cfg": {}, "text_cfg": {}}))
    with pytest.raises(ModelError, match=r"^The model broken@\w{12} has no vector size \(embed_dim\) in its "
                                         r"config.json.$"):
        factory.text_embedder(str(broken), RuntimeOptions()).load()

    shutil.copy(test_models["clip-onnx"] / "config.json", broken / "config.json")
    config = json.loads((test_models["clip-onnx"] / "visual" / "preprocess_cfg.json").read_text())
    (broken / "visual" / "preprocess_cfg.json").write_text(json.dumps({**config, "resize_mode": "longest"}))
    with pytest.raises(ModelError, match=r"resizes images by 'longest', which findimage does not know"):
        visual(broken)


def test_execution_providers_are_the_ones_named_or_the_best_present(test_models):
    folder = test_models["clip-onnx"]
    assert visual(folder).session.get_providers()[-1] == "CPUExecutionProvider"
    assert visual(folder, providers=("CPUExecutionProvider",)).session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match=r"^FINDIMAGE_ONNX_PROVIDERS names TPUExecutionProvider, which this "
                                         r"onnxruntime does not have \(it has .*CPUExecutionProvider.*\)\.$"):
        visual(folder, providers=("TPUExecutionProvider",))
    settings = load_settings({"FINDIMAGE_ONNX_PROVIDERS": "CUDAExecutionProvider, CPUExecutionProvider",
                              "FINDIMAGE_TORCH_THREADS": "1"}, env_file=None)
    assert RuntimeOptions.of(settings).providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert RuntimeOptions.of(settings).threads == 1

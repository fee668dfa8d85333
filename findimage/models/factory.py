"""Which implementation computes a model setting's vectors: the one choice, by the setting alone.

A model in immich's layout (a folder of that layout, a name of immich's catalogue, or `immich-app/<name>`)
runs on ONNX Runtime (models/onnx_clip.py) and never imports torch; anything else is a sentence-transformers
model (a hub id or a folder, the default pair) and runs on torch (models/clip.py). findimage.backends asks
here for the embedders of FINDIMAGE_IMAGE_MODEL and FINDIMAGE_TEXT_MODEL; `findimage status`, `doctor` and
`models` ask for the ids and runtimes the settings name.
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from findimage.errors import ModelError
from findimage.models.base import ImageEmbedder, TextEmbedder
from findimage.models.layout import layout_model
from findimage.models.runtime import RuntimeOptions

if TYPE_CHECKING:
    from findimage.models.clip import SentenceTransformerEmbedder

ONNX, TORCH = "ONNX Runtime", "torch"


def runtime_of(setting: str) -> str:
    """The runtime a model setting runs on: ONNX Runtime for immich's layout, else torch."""
    return ONNX if layout_model(setting) is not None else TORCH


def image_embedder(setting: str, options: RuntimeOptions) -> ImageEmbedder:
    """The process-wide image embedder of FINDIMAGE_IMAGE_MODEL=`setting`."""
    model = layout_model(setting)
    if model is not None:
        from findimage.models.onnx_clip import shared_image_embedder

        return shared_image_embedder(model, options)
    return _torch_embedder(setting, options)


def text_embedder(setting: str, options: RuntimeOptions) -> TextEmbedder:
    """The process-wide text embedder of FINDIMAGE_TEXT_MODEL=`setting`."""
    model = layout_model(setting)
    if model is not None:
        from findimage.models.onnx_clip import shared_text_embedder

        return shared_text_embedder(model, options)
    return _torch_embedder(setting, options)


def _torch_embedder(setting: str, options: RuntimeOptions) -> SentenceTransformerEmbedder:
    """The sentence-transformers model (images and text alike), unless the torch extra is not installed."""
    if not all(importlib.util.find_spec(name) for name in ("torch", "sentence_transformers")):  # not imported:
        # importing them takes seconds
        raise ModelError(f"The model {setting} runs on torch with sentence-transformers, which are not installed: "
                         "install findimage's torch extra (pip install 'findimage[torch]'), or choose a model in "
                         "immich's layout (e.g. ViT-B-32__openai; `findimage models`).")
    from findimage.models.clip import shared_embedder

    return shared_embedder(setting, options.quantize, options.min_cosine, options.threads)


def model_fingerprint(setting: str) -> str:
    """The model id a setting names, as the store records it, known without loading the model."""
    model = layout_model(setting)
    if model is not None:
        return model.fingerprint()
    from findimage.models.clip import model_fingerprint as torch_fingerprint

    return torch_fingerprint(setting)

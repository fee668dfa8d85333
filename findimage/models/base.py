"""What findimage asks of a model, whichever computes the vectors: the embedder protocols.

The local models (sentence-transformers on torch: models/clip.py; immich's layout on ONNX Runtime:
models/onnx_clip.py; models/factory.py chooses by the setting), Elasticsearch's `_infer`
(stores/elasticsearch/infer.py) and the fallback between the two (models/fallback.py) implement them; the
searcher and the indexer call embedders only through these, so they never ask which one they were given or
what it can do.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from findimage.errors import ModelError


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """The model as the index records it (a hub id, or `name@hash` of a local directory)."""
        ...

    def load(self) -> None:
        """Load (or check) the model now, so the first query does not wait for it."""
        ...


class TextEmbedder(Embedder, Protocol):
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, in CLIP's shared space."""
        ...


class ImageEmbedder(Embedder, Protocol):
    def vector_size(self) -> int:
        """How many numbers the model's vectors have: the size a store made for it takes."""
        ...

    def image_input_side(self) -> int | None:
        """The shortest side the model resizes images to (224 for CLIP ViT-B/32), if it resizes them."""
        ...

    def shrink(self, image: Image.Image) -> Image.Image:
        """`image` downscaled as the model would, so the picture waiting for the model is small; the
        embedding does not change."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised float32 row per image, in CLIP's shared space."""
        ...


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows of unit length, as float32 (every embedder's vectors are)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def check_vector_size(model_id: str, dims: int) -> None:
    """Any size the stores can hold: they take theirs from the image model when they are made (and refuse
    another one, findimage.errors.check_vector_size); a model without a size is refused."""
    if dims < 1:
        raise ModelError(f"The model {model_id} returns {dims} dims; findimage needs vectors of at least one.")

"""What findimage asks of a model, whichever computes the vectors: the embedder protocols.

The local sentence-transformers models (models/clip.py), Elasticsearch's `_infer` (stores/elasticsearch/infer.py)
and the fallback between the two (models/fallback.py) implement them; the searcher and the indexer call
embedders only through these, so they never ask which one they were given or what it can do.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image


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

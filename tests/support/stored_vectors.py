"""Unit vectors in clusters, as image embeddings are, and documents holding them, for the embedded store's tests."""
from __future__ import annotations

import time

import numpy as np

from findimage.records import ImageDoc, image_id_for


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, 512)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, n)] + 0.35 * rng.standard_normal((n, 512)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def docs(vectors, prefix="bulk", start=0):
    return [ImageDoc(image_id_for(f"{prefix}/{i}.jpg"), f"{i}.jpg", f"{prefix}/{i}.jpg", v, f"s{i}", 1, 1.0, 1, 1,
                     time.time(), "m") for i, v in enumerate(vectors, start)]

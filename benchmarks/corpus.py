"""Benchmark corpora, built here and cached: photo-like JPEGs and clustered unit vectors.

Photos: smooth scenes (gradients and shapes, upscaled from a small rendering) plus per-pixel
sensor-like noise whose strength follows the brightness (shot noise), saved at quality 92 with
EXIF like a phone camera. A 4032x3024 file is ~3 MB, the size of a typical 12-MP phone JPEG, so
the entropy decoding cost -- which draft mode cannot skip -- is realistic.

Vectors: CLIP image embeddings are not isotropic. They sit in clusters (subjects, scenes) whose
spread falls off over the dimensions. The generator draws cluster centres from a power-law
spectrum, gives each cluster its own size, and adds anisotropic within-cluster noise, then
L2-normalises. Queries come from the same mixture but are not in the store.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_VERSION = 2
VECTOR_VERSION = 2
DIMS = 512


def cache_root() -> Path:
    root = Path(os.environ.get("FINDIMAGE_CACHE", Path.home() / ".cache" / "findimage")) / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---- photos ------------------------------------------------------------------------------------
def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A small smooth scene: sky-like gradient, a horizon and a few objects with soft edges."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = rng.uniform(30, 230, 3), rng.uniform(20, 200, 3)
    t = (y / h)[..., None]
    img = top * (1 - t) + bottom * t
    horizon = h * rng.uniform(0.35, 0.7) + h * 0.08 * np.sin(x / w * rng.uniform(2, 9) + rng.uniform(0, 6))
    img = np.where((y > horizon)[..., None], img * 0.6 + rng.uniform(0, 120, 3), img)
    for _ in range(rng.integers(4, 10)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.03, 0.25) * w, rng.uniform(0.03, 0.25) * h
        d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        alpha = np.clip(1.5 - d, 0, 1)[..., None]
        img = img * (1 - alpha) + rng.uniform(0, 255, 3) * alpha
    return img


def photo(seed: int, size: tuple[int, int], noise: np.ndarray | None = None) -> Image.Image:
    """A photo-like picture of `size`: a scene rendered at 1/8, upscaled, with sensor-like noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = np.clip(_scene(rng, max(8, w // 8), max(8, h // 8)), 0, 255).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    if noise is None:
        noise = sensor_noise(h, w, seed)
    else:  # a shared noise field, shifted per picture (cheap, and no two files share pixels)
        noise = np.roll(noise[:h, :w], (int(rng.integers(0, h)), int(rng.integers(0, w))), axis=(0, 1))
    # shot noise: stronger in bright areas, like a real sensor after demosaicing
    scaled = noise * (0.6 + base / 320.0)
    return Image.fromarray(np.clip(base + scaled, 0, 255).astype(np.uint8), "RGB")


def sensor_noise(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7_000_000)
    luma = rng.normal(0, 3.5, (h, w, 1)).astype(np.float32)  # correlated across channels
    chroma = rng.normal(0, 2.0, (h, w, 3)).astype(np.float32)
    return luma + chroma


def _exif(seed: int, rotate: bool) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = f"Model {seed % 3}"
    exif[0x0112] = 6 if rotate else 1  # half the phone photos are portrait, stored landscape
    return exif


def photo_corpus(name: str, size: tuple[int, int], count: int, quality: int = 92, exif: bool = False) -> Path:
    """A folder of `count` distinct JPEGs (cached under ~/.cache/findimage/bench)."""
    folder = cache_root() / f"photos-v{PHOTO_VERSION}-{name}-{size[0]}x{size[1]}-q{quality}"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (folder / f"IMG_{i:04d}.jpg").exists()]
    if missing:
        noise = sensor_noise(size[1], size[0], 1)
        for i in missing:
            args = {"quality": quality}
            if exif:
                args["exif"] = _exif(i, rotate=i % 2 == 1)
            tmp = folder / f".IMG_{i:04d}.jpg.tmp"
            photo(10_000 + i, size, noise).save(tmp, "JPEG", **args)
            tmp.replace(folder / f"IMG_{i:04d}.jpg")
    return folder


def corpus_files(folder: Path, count: int) -> list[Path]:
    return [folder / f"IMG_{i:04d}.jpg" for i in range(count)]


# ---- vectors -----------------------------------------------------------------------------------
class VectorMixture:
    """Clustered, anisotropic unit vectors like CLIP image embeddings; rows reproducible by chunk.

    x = normalise(centre_k + spread_k * noise + cone): centre and noise follow a power-law spectrum
    (participation ratio ~100 dims), 5,000 clusters of Zipf-like popularity, and a shared "cone"
    direction as in CLIP, so the median pairwise cosine is ~0.4 and the 10th neighbour of an image
    sits at ~0.8 in a 1M store. Query stream 1 is image-like (new points of the mixture); stream 2
    is text-like: a blend of two clusters' centres plus noise and a modality offset, far from any
    stored point (the cosines CLIP gives text-to-image are ~0.3), the harder case for an IVF index.
    """

    def __init__(self, seed: int = 0, clusters: int = 5000, spectrum_decay: float = 0.35):
        rng = np.random.default_rng(seed)
        self.scale = np.arange(1, DIMS + 1, dtype=np.float32) ** -spectrum_decay
        self.scale /= np.linalg.norm(self.scale)
        self.rotation = np.linalg.qr(rng.standard_normal((DIMS, DIMS)))[0].astype(np.float32)
        self.centres = rng.standard_normal((clusters, DIMS)).astype(np.float32) * self.scale
        popularity = 1.0 / np.arange(1, clusters + 1) ** 0.8
        self.weights = popularity / popularity.sum()
        self.spread = rng.uniform(0.4, 0.9, clusters).astype(np.float32)
        self.cone = self.rotation[-1] * 1.0  # shared by all images
        self.modality = self.rotation[-2] * 2.0  # what text queries add (orthogonal-ish to images)
        self.seed = seed

    def rows(self, start: int, stop: int, stream: int = 0) -> np.ndarray:
        """Vectors start..stop of a stream (0: the store, 1: image-like queries, 2: text-like queries)."""
        rng = np.random.default_rng([self.seed, stream, start, stop])
        n = stop - start
        which = rng.choice(len(self.centres), size=n, p=self.weights)
        noise = rng.standard_normal((n, DIMS)).astype(np.float32) * self.scale
        if stream == 2:
            other = rng.choice(len(self.centres), size=n, p=self.weights)
            mix = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
            raw = (mix * self.centres[which] + (1 - mix) * self.centres[other] + 0.5 * noise) @ self.rotation
            raw = raw + self.modality
        else:
            raw = (self.centres[which] + noise * self.spread[which, None]) @ self.rotation + self.cone
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    def queries(self, count: int) -> np.ndarray:
        """Half image-like, half text-like queries."""
        half = count // 2
        return np.vstack([self.rows(0, half, stream=1), self.rows(0, count - half, stream=2)])

    def chunks(self, count: int, chunk: int = 50_000, stream: int = 0):
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            yield start, self.rows(start, stop, stream)


def exact_top_k(mixture: VectorMixture, count: int, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the exact top-k by inner product over the first `count` store vectors."""
    best_sims = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), k), np.int64)
    for start, block in mixture.chunks(count):
        sims = queries @ block.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if sims.shape[1] > k else np.argsort(-sims, axis=1)
        cand_sims = np.concatenate([best_sims, np.take_along_axis(sims, top, 1)], 1)
        cand_ids = np.concatenate([best_ids, top + start], 1)
        order = np.argsort(-cand_sims, axis=1)[:, :k]
        best_sims = np.take_along_axis(cand_sims, order, 1)
        best_ids = np.take_along_axis(cand_ids, order, 1)
    return best_ids


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]

"""Photo-like test images (smooth shapes plus sensor noise, so they compress like photos) and bad files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.2, 0.2, (3, 2))
    img = np.stack([base[c] + slope[c, 0] * x * 640 / w + slope[c, 1] * y * 480 / h for c in range(3)], -1)
    for _ in range(6):  # a few blobs so pictures differ in content, not just colour
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def save_photo(path: Path, seed: int, size=(640, 480), fmt: str | None = None, **save_args) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed, size).save(path, fmt, **save_args)
    return path


def jpeg_bytes(seed: int, size=(640, 480), quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    args = {"quality": quality}
    if exif is not None:
        args["exif"] = exif
    photo(seed, size).save(out, "JPEG", **args)
    return out.getvalue()


def write_bad_files(folder: Path) -> dict[str, str]:
    """Every kind of broken input the indexer must survive, by relative path -> expected reason fragment."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(1)[:3000])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "login.jpg").write_bytes(b"<!DOCTYPE html><html><body>Sign in to Slack</body></html>")
    (folder / "notes.png").write_text("just some text, not a picture\n")
    bomb = Image.new("L", (12_000, 12_000))  # 144 MP of zeros: a few KB as PNG
    bomb.save(folder / "bomb.png", optimize=True)
    return {"truncated.jpg": "truncated", "empty.jpg": "empty", "login.jpg": "not an image",
            "notes.png": "not an image", "bomb.png": "too large"}

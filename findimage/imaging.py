"""Turn image files and bytes into RGB pictures a 224-px CLIP model can take, cheaply and safely."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# CLIP looks at 224x224; decoding a JPEG at 1/2..1/8 scale (draft mode) down to at least this
# keeps quality for the model while skipping most of the decode work of a 12-MP photo.
DRAFT_MIN_SIDE = 448
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ImageError(Exception):
    """A file that cannot be used as an image, with a reason a person can act on."""


@dataclass
class Prepared:
    image: Image.Image
    width: int  # of the original, after EXIF orientation
    height: int


def set_pixel_limit(max_pixels: int) -> None:
    """Pillow's decompression-bomb guard: refuse images above this many pixels."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def prepare_file(path: str | Path, min_side: int = DRAFT_MIN_SIDE) -> Prepared:
    try:
        with open(path, "rb") as f:
            return prepare_stream(f, min_side)
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None


def prepare_bytes(data: bytes, min_side: int = DRAFT_MIN_SIDE) -> Prepared:
    return prepare_stream(io.BytesIO(data), min_side)


def prepare_stream(stream, min_side: int = DRAFT_MIN_SIDE) -> Prepared:
    """Decode the first frame, apply EXIF orientation and convert to RGB, as small as the model allows."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = _oriented_size(image)
            if image.format == "JPEG":
                image.draft("RGB", _draft_size(image.size, min_side))
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return Prepared(_to_rgb(image), width, height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        if _looks_empty(stream):
            raise ImageError("empty file (0 bytes)") from None
        raise ImageError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"broken or truncated image ({exc})") from None


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    orientation = image.getexif().get(0x0112, 1)
    w, h = image.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _draft_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    w, h = size
    scale = max(1.0, min(w, h) / min_side)
    return int(w / scale), int(h / scale)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting Pillow clip everything to white.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _looks_empty(stream) -> bool:
    try:
        stream.seek(0, io.SEEK_END)
        return stream.tell() == 0
    except (OSError, ValueError):
        return False


def thumbnail_jpeg(path: str | Path, long_side: int = 1024, quality: int = 85) -> bytes:
    """A downscaled JPEG copy for showing a match (Slack uploads, served previews)."""
    image = prepare_file(path, min_side=long_side).image
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()

"""Turn image files and bytes into RGB pictures a 224-px CLIP model can take, cheaply and safely."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from findimage import decode_budget
from findimage.archive_files import ArchiveFileRefused, Indexed, read_archive_file
from findimage.config import DecodeLimits
from findimage.errors import FindimageError

# CLIP looks at 224x224; decoding a JPEG at 1/2..1/8 scale (draft mode) down to at least this
# keeps quality for the model while skipping most of the decode work of a 12-MP photo.
DRAFT_MIN_SIDE = 448
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# The decoders findimage uses; Pillow's other plugins (some of which do work at open) are never tried.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes multi-picture (MPO) files

# Every caller passes its own pixel limit, checked right after the header is read (see _check_size).
# Pillow's process-wide guard would make one caller's limit every thread's, and its warning between
# 1x and 2x the limit can only be turned into an error through process-global warning filters.
Image.MAX_IMAGE_PIXELS = None
# Pillow allocates pixels in blocks (16 MB by default). Blocks of 64 MB are above glibc's mmap threshold
# (at most 32 MB), so a large decoded picture goes back to the kernel when freed instead of staying in a
# thread's heap arena: measured with four 40-MP PNGs decoded two at a time, RSS after them 480 -> 160 MB.
Image.core.set_block_size(64 * 2**20)


class ImageError(FindimageError):
    """A file that cannot be used as an image, with a reason a person can act on."""


@dataclass
class Prepared:
    image: Image.Image
    width: int  # of the original, after EXIF orientation
    height: int
    exif: Image.Exif | None = None  # read while decoding (dates come from it without opening the file again)


def prepare_bytes(data: bytes, min_side: int = DRAFT_MIN_SIDE, max_pixels: int | None = None,
                  budget: int | None = None) -> Prepared:
    """Decode the first frame, apply EXIF orientation and convert to RGB, as small as the model allows.

    Images that would decode to more than `max_pixels`, or whose decoding would take more than `budget`
    bytes of memory (findimage.decode_budget), are refused from their header, before any pixel data is
    read (a few hundred kB of PNG can claim 12,000 x 12,000 pixels: ~2 GB once decoded). Either left out:
    an archive image's, as the settings declare it by default."""
    if not (max_pixels and budget):
        declared = DecodeLimits.declared()
        max_pixels, budget = max_pixels or declared.max_pixels, budget or declared.budget
    stream = io.BytesIO(data)
    try:
        image = Image.open(stream, formats=FORMATS)
        original_size = image.size
        if image.format in ("JPEG", "MPO"):
            # JPEGs decode at 1/2..1/8 scale when drafted: what counts is what will be decoded.
            image.draft("RGB", _draft_size(image.size, min_side))
        _check_size(image.size, max_pixels)  # before anything that may decode (a PNG's EXIF can follow its pixels)
        decode_budget.check(image, original_size, data, budget, max_pixels)
        image.seek(0)
        image.load()
        exif = image.getexif()  # loaded: no second decode, even for a PNG whose EXIF follows its pixels
        width, height = _oriented_size(exif, original_size)
        ImageOps.exif_transpose(image, in_place=True)  # a copy would double the peak for a large picture
        return Prepared(_to_rgb(image), width, height, exif)
    except decode_budget.OverBudget as exc:
        raise ImageError(str(exc)) from None
    except UnidentifiedImageError:
        if not data:
            raise ImageError("empty file (0 bytes)") from None
        raise ImageError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"broken or truncated image ({exc})") from None


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageError(f"image too large to decode safely ({w:,} x {h:,} pixels; at most "
                         f"{max_pixels / 1e6:g} megapixels)")


def _oriented_size(exif: Image.Exif, size: tuple[int, int]) -> tuple[int, int]:
    orientation = exif.get(0x0112, 1)
    w, h = size
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
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")  # one copy at most (decode_budget counts it)
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def header_exif(image: Image.Image) -> Image.Exif:
    """An opened image's EXIF from its header only. Pillow's PNG reader decodes the whole image to look
    for an EXIF chunk after the pixels; that one is ignored here (an opened file is not decoded)."""
    if image.format == "PNG" and "exif" not in image.info:
        return Image.Exif()
    return image.getexif()


def thumbnail_jpeg(data: bytes, long_side: int = 1024, quality: int = 85, max_pixels: int | None = None,
                   budget: int | None = None) -> bytes:
    """A downscaled JPEG copy of an image file's bytes for showing a match (Slack uploads, previews); the
    limits as prepare_bytes takes them."""
    image = prepare_bytes(data, min_side=long_side, max_pixels=max_pixels, budget=budget).image
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def archive_thumbnail(root: str | Path, relative_path: str, indexed: Indexed | None, long_side: int,
                      limits: DecodeLimits) -> bytes:
    """thumbnail_jpeg of an archive file read as archive_files reads it (inside the archive, a regular
    file, as indexed); ImageError with the reason otherwise."""
    try:
        data = read_archive_file(root, relative_path, limits.budget, indexed)
    except ArchiveFileRefused as exc:
        raise ImageError(str(exc)) from None
    return thumbnail_jpeg(data, long_side, max_pixels=limits.max_pixels, budget=limits.budget)

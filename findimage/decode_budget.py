"""How much memory decoding an image will take, read from its header before a pixel is decoded.

A pixel limit is not a memory limit: a progressive (or multi-scan) JPEG keeps a coefficient buffer
for the *full* image (2 bytes per sample) however small it is drafted, and libjpeg fills it, so a
2 MB file of 32768 x 32768 grey pixels costs 2 GB while its drafted size passes any pixel check; a
TIFF's decoder allocates one whole tile or strip, and the tile size is a header field that can claim
16384 x 16384 pixels for a 64 x 64 image. libvips and ImageMagick guard with memory budgets for the
same reason. This module estimates the decoder's working memory from what Pillow read at open, so a
caller can refuse an image over its budget in one sentence.
"""
from __future__ import annotations

import math

from PIL import Image, TiffImagePlugin

# Drafting shrinks a JPEG by at most 8 per side, and the other formats decode at full size: no
# original may be more than this many times the pixel limit, whatever its decoded size would be.
MAX_ORIGINAL_FACTOR = 16
# A tile or strip wider or taller than this many times the image (and than TILE_SLACK pixels) is
# not padding but a claim on memory.
TILE_FACTOR = 2
TILE_SLACK = 1024


class OverBudget(Exception):
    """Decoding would take more memory than allowed; the message is the reason, for a person."""


def check(image: Image.Image, original_size: tuple[int, int], data: bytes | None, budget: int,
          max_pixels: int) -> None:
    """OverBudget if the opened (not yet loaded) `image` would cost more than `budget` bytes to decode,
    or if its original is larger than any drafted decode could justify."""
    w, h = original_size
    if w * h > max_pixels * MAX_ORIGINAL_FACTOR:
        raise OverBudget(f"image too large to decode safely ({w:,} x {h:,} pixels)")
    needed = working_bytes(image, original_size, data)
    if needed > budget:
        kind = _kind(image, data)
        raise OverBudget(f"image needs too much memory to decode safely (about {_mb(needed)} for a {w:,} x "
                         f"{h:,} {kind}; at most {_mb(budget)})")


def working_bytes(image: Image.Image, original_size: tuple[int, int], data: bytes | None = None) -> int:
    """Peak bytes of decoding `image` to RGB: the decoded picture, its RGB copy, and the decoder's own
    buffers (a JPEG's coefficients where it needs them, a TIFF's tile or strip)."""
    w, h = image.size  # after draft: what will be decoded
    total = w * h * (_stored_bytes_per_pixel(image.mode) + _conversion_bytes_per_pixel(image))
    if image.format in ("JPEG", "MPO") and _needs_coefficient_buffer(image, data):
        total += _jpeg_coefficient_bytes(image, original_size)
    elif image.format == "TIFF" and isinstance(image, TiffImagePlugin.TiffImageFile):
        total += _tiff_buffer_bytes(image)
    return total


def _stored_bytes_per_pixel(mode: str) -> int:
    """Pillow's own storage: one byte for 1/L/P, two for 16-bit grey, four for every other mode (RGB too)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _conversion_bytes_per_pixel(image: Image.Image) -> int:
    """What imaging._to_rgb allocates beside the decoded picture: nothing for RGB, an RGB copy for the
    other modes, and for transparency an RGBA copy, the white background and the alpha mask."""
    mode = image.mode
    if mode == "RGB":
        return 0
    if mode == "RGBA":
        return 4 + 1
    if mode in ("LA", "PA", "La") or (mode == "P" and "transparency" in image.info):
        return 4 + 4 + 1
    if mode.startswith("I"):
        return 4 + 4 + 1  # 16-bit grey is scaled through a 32-bit copy to 8 bits, then to RGB
    return 4


def _needs_coefficient_buffer(image: Image.Image, data: bytes | None) -> bool:
    """Progressive JPEGs, and sequential ones in more than one scan, are decoded through a buffer of
    every coefficient of the full image (libjpeg's buffered mode)."""
    if image.info.get("progressive") or image.info.get("progression"):
        return True
    if data is None:
        return True  # cannot tell: assume the expensive kind
    start = _first_scan(data)
    if start is None:
        return True
    # Entropy-coded data stuffs every 0xFF it contains, so the next SOS or EOI marker is real.
    next_sos, eoi = data.find(b"\xff\xda", start), data.find(b"\xff\xd9", start)
    return next_sos != -1 and (eoi == -1 or next_sos < eoi)


def _first_scan(data: bytes) -> int | None:
    """The offset just past the first scan header of the main image, walking the marker segments
    (an EXIF thumbnail inside APP1 has its own scans, which must not count)."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            return pos + 2 + length
        pos += 2 + length
    return None


def _jpeg_coefficient_bytes(image: Image.Image, original_size: tuple[int, int]) -> int:
    """64 coefficients of 2 bytes per 8x8 block of each component, at its sampling, over the full image."""
    w, h = original_size
    layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * max(1, len(image.getbands()))
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    total = 0
    for _, h_samp, v_samp, _ in layers:
        blocks_x = math.ceil(math.ceil(w * (h_samp or 1) / h_max) / 8)
        blocks_y = math.ceil(math.ceil(h * (v_samp or 1) / v_max) / 8)
        total += blocks_x * blocks_y * 64 * 2
    return total


def _tiff_buffer_bytes(image: TiffImagePlugin.TiffImageFile) -> int:
    tags = image.tag_v2
    w, h = image.size
    samples = int(tags.get(277, 1) or 1)
    bits = tags.get(258, (8,))
    bits = max(bits) if isinstance(bits, tuple) and bits else int(bits or 8)
    bytes_per_pixel = max(1, math.ceil(samples * bits / 8))
    if 322 in tags or 323 in tags:
        tile_w, tile_h = int(tags.get(322, w) or w), int(tags.get(323, h) or h)
        if tile_w > max(TILE_FACTOR * w, TILE_SLACK) or tile_h > max(TILE_FACTOR * h, TILE_SLACK):
            raise OverBudget(f"TIFF claims {tile_w:,} x {tile_h:,} pixel tiles for a {w:,} x {h:,} image")
        return tile_w * tile_h * bytes_per_pixel
    rows = min(int(tags.get(278, h) or h), h)  # rows per strip; larger means one strip
    return w * rows * bytes_per_pixel


def _kind(image: Image.Image, data: bytes | None) -> str:
    if image.format in ("JPEG", "MPO"):
        if image.info.get("progressive") or image.info.get("progression"):
            return "progressive JPEG"
        return "multi-scan JPEG" if _needs_coefficient_buffer(image, data) else "JPEG"
    return f"{image.format or 'image'}"


def _mb(count: int) -> str:
    return f"{count / 2**20:,.0f} MB"

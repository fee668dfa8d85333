"""Small files that claim to cost gigabytes to decode: decode bombs under the pixel limit.

`claims_*` files carry only a header's worth of truth (the pixel data is a tiny image's, or none): they
are what a guard must refuse from the header, and cheap to make. `real_*` files decode for real (the
benchmark measures what they cost without the guard); making them takes seconds and up to a GB.
"""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

SOF_MARKERS = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive


def _jpeg(size: tuple[int, int], mode: str = "L", progressive: bool = False) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, "JPEG", progressive=progressive, quality=75)
    return out.getvalue()


def _patched_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with the size in its frame header replaced (the scans still hold the small image)."""
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in SOF_MARKERS:
            frame = pos + 4  # precision (1 byte), then height, width
            return data[:frame + 1] + struct.pack(">HH", height, width) + data[frame + 5:]
        pos += 2 + length
    raise ValueError("no frame header")


def claims_progressive_jpeg(width: int, height: int, mode: str = "L") -> bytes:
    return _patched_size(_jpeg((64, 64), mode, progressive=True), width, height)


def claims_baseline_jpeg(width: int, height: int, mode: str = "L") -> bytes:
    return _patched_size(_jpeg((64, 64), mode), width, height)


def claims_multi_scan_jpeg(width: int, height: int) -> bytes:
    """A sequential JPEG whose frame is followed by a second scan (components coded one scan each are
    legal, and libjpeg buffers the whole image for them as for progressive ones)."""
    data = claims_baseline_jpeg(width, height, "L")
    eoi = data.rindex(b"\xff\xd9")
    second_scan = b"\xff\xda" + struct.pack(">HB", 8, 1) + bytes([1, 0x00, 0, 63, 0]) + b"\x00" * 16
    return data[:eoi] + second_scan + b"\xff\xd9"


def tiled_tiff(width: int, height: int, tile: tuple[int, int], tile_data: bytes | None = None) -> bytes:
    """A deflate-compressed 8-bit grey TIFF of `width` x `height` held in one tile of `tile` pixels
    (at least the image's size).

    Without `tile_data`, the tile holds a few bytes: the header is the claim. With it (deflated
    zeros of the whole tile, see zero_tile), libtiff really allocates and fills the tile."""
    assert tile[0] >= width and tile[1] >= height, "one tile holds the whole image"
    payload = tile_data if tile_data is not None else zlib.compress(b"\0" * 64)
    entries = [(256, width), (257, height), (258, 8), (259, 8), (262, 1), (277, 1),
               (322, tile[0]), (323, tile[1]), (324, 0), (325, len(payload))]
    data_at = 8 + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, value in entries:
        value = data_at if tag == 324 else value
        if tag in (258, 259, 262, 277):  # SHORT values, left-justified in the 4-byte field
            out += struct.pack("<HHIHH", tag, 3, 1, value, 0)
        else:
            out += struct.pack("<HHII", tag, 4, 1, value)
    out += struct.pack("<I", 0)
    return bytes(out) + payload


def zero_tile(tile: tuple[int, int]) -> bytes:
    """A whole tile of zeros, deflated (~1 MB for 32768 x 32768), made in chunks to stay small."""
    squeeze = zlib.compressobj(9)
    chunk = b"\0" * (1 << 24)
    left, parts = tile[0] * tile[1], []
    while left > 0:
        parts.append(squeeze.compress(chunk[:min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(squeeze.flush())
    return b"".join(parts)


def real_progressive_jpeg(width: int, height: int) -> bytes:
    """A real progressive grey JPEG of that size (flat grey compresses to ~2 MB at 32768 x 32768)."""
    return _jpeg((width, height), "L", progressive=True)


def red_pictures_at(folder, names) -> None:
    """Same-named pictures, all red: what a link swapped into the archive would lead to."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (320, 240), (255, 0, 0)).save(folder / name)


def is_red(jpeg: bytes) -> bool:
    r, g, b = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((1, 1)).getpixel((0, 0))
    return r > 200 and g < 60 and b < 60

"""Decode bombs under the pixel limit: small files whose decoding would cost gigabytes are refused from
their header, in one sentence, by every decode path (query images, the indexer, previews, dates)."""
from __future__ import annotations

import io
import struct

import pytest
from hostile_images import claims_baseline_jpeg, claims_multi_scan_jpeg, claims_progressive_jpeg, tiled_tiff, zero_tile
from photos import jpeg_bytes
from PIL import Image, PngImagePlugin

from findimage.dates import taken_of_header
from findimage.decode_budget import working_bytes
from findimage.imaging import ImageError, prepare_bytes, thumbnail_jpeg

MB = 2**20
QUERY = {"max_pixels": 40_000_000, "budget": 256 * MB}


def test_a_progressive_jpeg_is_refused_for_the_coefficients_of_its_full_size_however_small_it_is_drafted():
    # 16,000 x 16,000 grey drafts to 2,000 x 2,000 (4 MP, well under the pixel limit), but libjpeg
    # buffers 2 bytes for each of its 256 M samples first.
    with pytest.raises(ImageError, match=r"^image needs too much memory to decode safely \(about 507 MB for a "
                                         r"16,000 x 16,000 progressive JPEG; at most 256 MB\)$"):
        prepare_bytes(claims_progressive_jpeg(16_000, 16_000), **QUERY)
    # The same size in one baseline scan is decoded at 1/8 scale without that buffer: it gets as far
    # as decoding (this file's scan, made for 64 x 64, is padded out by libjpeg).
    assert prepare_bytes(claims_baseline_jpeg(16_000, 16_000), **QUERY).image.size == (2000, 2000)


def test_a_sequential_jpeg_in_several_scans_counts_like_a_progressive_one():
    with pytest.raises(ImageError, match=r"multi-scan JPEG; at most 256 MB"):
        prepare_bytes(claims_multi_scan_jpeg(16_000, 16_000), **QUERY)


def test_the_scans_of_an_exif_thumbnail_do_not_make_a_photo_multi_scan():
    photo = claims_baseline_jpeg(16_000, 16_000)
    thumbnail = jpeg_bytes(seed=1, size=(160, 120))  # a whole JPEG, scans and all, inside APP1
    app1 = b"Exif\0\0" + thumbnail
    with_thumbnail = photo[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + photo[2:]
    try:
        prepare_bytes(with_thumbnail, **QUERY)
    except ImageError as exc:  # decoding may fail on this file's short scan; the budget did not refuse it
        assert "memory" not in str(exc)


def test_the_estimate_follows_chroma_subsampling():
    image = Image.open(io.BytesIO(claims_progressive_jpeg(8000, 6000, "RGB")))  # 4:2:0: Y full, Cb and Cr a quarter
    assert working_bytes(image, image.size, None) == pytest.approx(8000 * 6000 * (1 + 0.25 + 0.25) * 2
                                                                   + 8000 * 6000 * 4, rel=0.01)


def test_a_tiff_whose_tile_claims_far_more_than_its_image_is_refused():
    with pytest.raises(ImageError, match=r"^TIFF claims 16,384 x 16,384 pixel tiles for a 64 x 64 image$"):
        prepare_bytes(tiled_tiff(64, 64, (16_384, 16_384)), **QUERY)
    # An ordinary tile (padding a small image up to 256 x 256) decodes.
    assert prepare_bytes(tiled_tiff(64, 64, (256, 256), zero_tile((256, 256))), **QUERY).image.size == (64, 64)


def test_a_tiff_tile_within_the_image_shape_still_counts_against_the_budget():
    # 400 MB for the tile, beside 1,907 MB for the decoded picture and its RGB copy.
    with pytest.raises(ImageError, match=r"about 2,307 MB for a 20,000 x 20,000 TIFF; at most 256 MB"):
        prepare_bytes(tiled_tiff(20_000, 20_000, (20_480, 20_480)), max_pixels=500_000_000, budget=256 * MB)


def test_the_original_size_is_capped_for_every_format_not_only_the_drafted_one():
    # 65,535 x 39,000 drafts to 8,192 x 4,875 (40 MP): it passed the query limit before.
    with pytest.raises(ImageError, match=r"^image too large to decode safely \(65,535 x 39,000 pixels\)$"):
        prepare_bytes(claims_baseline_jpeg(65_535, 39_000), **QUERY)


def test_previews_have_the_same_budget():
    with pytest.raises(ImageError, match="progressive JPEG"):
        thumbnail_jpeg(claims_progressive_jpeg(16_000, 16_000), max_pixels=120_000_000, budget=256 * MB)


def test_dates_are_read_from_headers_without_decoding_a_png(monkeypatch):
    loads = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(self.size))
    png = io.BytesIO()
    Image.new("L", (4000, 3000)).save(png, "PNG")  # no EXIF before its pixels: Pillow would decode to look after them
    assert taken_of_header(io.BytesIO(png.getvalue()), 0.0)[1] == "mtime"
    assert loads == []


def test_dates_are_never_read_with_other_pillow_plugins():
    ico = io.BytesIO()
    Image.new("RGB", (32, 32)).save(ico, "ICO")
    opened = []
    original = Image.open

    def spy(fp, mode="r", formats=None):
        opened.append(formats)
        return original(fp, mode, formats)

    Image.open, saved = spy, Image.open
    try:
        assert taken_of_header(io.BytesIO(ico.getvalue()), 0.0)[1] == "mtime"
    finally:
        Image.open = saved
    assert opened and all(f is not None and "ICO" not in f for f in opened)

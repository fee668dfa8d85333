"""Image preparation: every odd kind of picture a team archive holds becomes a proper RGB image."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from photos import jpeg_bytes, photo, write_bad_files
from PIL import Image

from findimage.imaging import DRAFT_MIN_SIDE, ImageError, prepare_bytes, thumbnail_jpeg


def encoded(image: Image.Image, fmt: str, **args) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **args)
    return out.getvalue()


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a portrait photo stored landscape
    prepared = prepare_bytes(jpeg_bytes(1, size=(640, 480), exif=exif))
    assert (prepared.width, prepared.height) == (480, 640)
    assert prepared.image.size == (480, 640)


def test_large_jpeg_is_decoded_in_draft_mode_but_reports_its_real_size():
    prepared = prepare_bytes(jpeg_bytes(2, size=(4032, 3024)))
    assert (prepared.width, prepared.height) == (4032, 3024)
    # drafted at 1/4 scale: the smallest JPEG scale whose short side (756) is still >= DRAFT_MIN_SIDE (448);
    # 1/8 would give 378
    assert prepared.image.size == (1008, 756)
    assert DRAFT_MIN_SIDE == 448


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "CMYK", "I;16", "1"])
def test_every_colour_mode_becomes_rgb(mode):
    source = photo(3, (64, 48))
    image = source.convert(mode) if mode != "I;16" else Image.fromarray(
        np.asarray(source.convert("L"), dtype=np.uint16) * 256)
    fmt = {"CMYK": "JPEG", "I;16": "PNG", "1": "BMP"}.get(mode, "PNG")
    prepared = prepare_bytes(encoded(image, fmt))
    assert prepared.image.mode == "RGB" and prepared.image.size == (64, 48)
    if mode == "I;16":  # 16-bit grey keeps its tones instead of clipping to white
        assert 20 < np.asarray(prepared.image).mean() < 235


def test_transparent_pixels_become_white_not_black():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    prepared = prepare_bytes(encoded(image, "PNG"))
    assert prepared.image.getpixel((5, 5)) == (255, 255, 255)


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert prepare_bytes(data).image.getpixel((10, 10))[0] > 200


def test_tiff_and_webp_are_read():
    for fmt in ("TIFF", "WEBP"):
        assert prepare_bytes(encoded(photo(4, (50, 40)), fmt)).image.size == (50, 40)


def test_each_bad_file_gets_a_clear_reason(tmp_path):
    expected = write_bad_files(tmp_path)
    for name, fragment in expected.items():
        with pytest.raises(ImageError, match=fragment):
            prepare_bytes((tmp_path / name).read_bytes())


def test_pixel_limit_is_per_call_and_counts_what_will_be_decoded():
    png = encoded(photo(5, (2000, 1500)), "PNG")  # 3 MP, decoded at full size
    with pytest.raises(ImageError, match=r"too large to decode safely \(2,000 x 1,500 pixels; at most 1 megapixels\)"):
        prepare_bytes(png, max_pixels=1_000_000)
    assert prepare_bytes(png, max_pixels=3_000_000).image.size == (2000, 1500)
    # A JPEG is drafted (decoded at 1/2..1/8 scale): 2000x1500 needs only 1000x750 for a 448-px model side.
    assert prepare_bytes(jpeg_bytes(5, size=(2000, 1500)), max_pixels=1_000_000).width == 2000


def test_a_huge_image_is_refused_from_its_header_without_decoding_pixels():
    # A PNG whose header claims 12,000 x 12,000 but whose pixel data is cut off: had the decoder run,
    # the error would be "truncated"; refused from the header, it is "too large".
    full = encoded(Image.new("1", (12_000, 12_000)), "PNG")
    header_only = full[:200]
    with pytest.raises(ImageError, match="too large"):
        prepare_bytes(header_only, max_pixels=40_000_000)
    with pytest.raises(ImageError, match="truncated|broken"):
        prepare_bytes(header_only, max_pixels=200_000_000)


def test_limits_of_concurrent_callers_do_not_leak_into_each_other():
    """The guard is per call: a strict caller in one thread never changes what another thread accepts."""
    png = encoded(photo(6, (1500, 1000)), "PNG")
    barrier = threading.Barrier(8)
    outcomes: dict[int, str] = {}

    def decode(i: int) -> None:
        strict = i % 2 == 0
        barrier.wait()
        for _ in range(5):
            try:
                prepare_bytes(png, max_pixels=1_000_000 if strict else 2_000_000)
                outcomes[i] = outcomes.get(i, "") + "ok "
            except ImageError:
                outcomes[i] = outcomes.get(i, "") + "refused "

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: set(o.split()) for i, o in outcomes.items()} == {
        i: {"refused"} if i % 2 == 0 else {"ok"} for i in range(8)}


def test_only_the_image_formats_findimage_reads_are_opened(tmp_path):
    ico = io.BytesIO()
    photo(7, (64, 64)).save(ico, "ICO")
    with pytest.raises(ImageError, match="not an image"):
        prepare_bytes(ico.getvalue())


def test_thumbnail_is_a_downscaled_jpeg():
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(jpeg_bytes(6, size=(3000, 2000)))))
    assert thumb.format == "JPEG" and max(thumb.size) == 1024

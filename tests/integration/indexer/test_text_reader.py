"""Text in pictures: the real engine (RapidOCR, PP-OCRv6 models from its wheel) reading rendered
screenshots, slides, street signs and photos through `TextReader.read`, and the search words of what it
read (`words`, `normalize`), folded like path words."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import rendered_text as rt
from PIL import Image, ImageDraw

from findimage.imaging import prepare_bytes
from findimage.models.text_reader import (
    DET_MODEL,
    PROBE_SIDES,
    REC_MODEL,
    TextLine,
    TextReader,
    TextReadingError,
    Tuning,
    looks_like_screen,
    normalize,
    probe_copy,
    words,
)


@pytest.fixture(scope="module")
def reader() -> TextReader:
    reader = TextReader(threads=1)
    reader.load()
    return reader


def read_words(reader: TextReader, picture: rt.Rendered) -> list[str]:
    return [w for line in reader.read(picture.image) for w in words(line.text)]


# ---- what is read ----------------------------------------------------------------------------------
def test_an_error_dialog_is_read_word_for_word(reader):
    lines = reader.read(rt.error_dialog().image)
    assert rt.ERROR_DIALOG in [line.text for line in lines]
    assert all(isinstance(line, TextLine) and 0.6 <= line.confidence <= 1 for line in lines)
    assert {"error", "disk", "quota", "exceeded", "on", "volume", "srv", "data", "backup", "cancel"} <= set(
        w for line in lines for w in words(line.text))


def test_a_german_slide_keeps_umlauts_and_sharp_s(reader):
    texts = [line.text for line in reader.read(rt.german_slide().image)]
    assert rt.GERMAN_SLIDE in texts  # the recogniser outputs ä ö ü Ä Ö Ü ß and the dash as drawn
    assert "Märkte in Österreich und der Schweiz" in texts and "Maßnahmen für das zweite Halbjahr" in texts


def test_queries_typed_with_ss_or_without_dots_match_what_was_read(reader):
    found = set(read_words(reader, rt.german_slide()))
    for typed in ("Grossenordnung", "Uberblick", "uberblick", "GRÖSSENORDNUNG", "Massnahmen", "osterreich"):
        assert set(words(typed)) <= found, typed
    assert {"umsatzprognose", "2025", "markte", "stuckzahlen", "12"} <= found


def test_a_rotated_noisy_jpeg_of_a_street_sign(reader):
    sign = rt.street_sign()
    lines = reader.read(sign.image)
    assert [line.text for line in lines] == [rt.STREET_SIGN]
    (x0, y0), (x1, y1), _, _ = lines[0].box
    assert 5 < math.degrees(math.atan2(y0 - y1, x1 - x0)) < 13  # the sign is turned by 9 degrees
    assert inside(lines[0].box, sign.where)


def test_a_small_sign_in_a_12_mp_photo_is_found_where_it_is(reader):
    sign = rt.large_photo_with_small_sign()
    lines = reader.read(sign.image)
    assert [line.text for line in lines] == ["Bahnhofstraße 12"]
    assert inside(lines[0].box, sign.where)  # corners in the original picture's pixels
    assert words(lines[0].text) == ["bahnhofstrasse", "12"] == words("Bahnhofstrasse 12")


@pytest.mark.parametrize("seed, size", [(5, (1600, 1200)), (6, (4032, 3024)), (7, (800, 600)), (8, (3024, 4032))])
def test_a_photo_without_text_yields_no_lines(reader, seed, size):
    assert reader.read(rt.photo_without_text(seed, size).image) == []


class Recorded:
    """A model session that notes the shape of each input it runs."""

    def __init__(self, session, shapes: list):
        self.session, self.shapes = session, shapes

    def __call__(self, pixels):
        self.shapes.append(pixels.shape)
        return self.session(pixels)


@pytest.mark.parametrize("seed, regions", [(20, 1), (100, 0)])
def test_a_photo_without_text_costs_two_small_detections(reader, monkeypatch, seed, regions):
    """The probes (288 and 192 px) find nothing line-sized: at most the big regions they took for text
    are recognised, from the probe's boxes, each at its own width (a few big letters: not padded to the
    recogniser's 320 px, a fifth of the work), and rejected."""
    engine = reader._engine
    detected: list[tuple[int, ...]] = []
    recognised: list[tuple[int, ...]] = []
    monkeypatch.setattr(engine.text_det, "session", Recorded(engine.text_det.session, detected))
    monkeypatch.setattr(engine.text_rec, "session", Recorded(engine.text_rec.session, recognised))
    assert reader.read(rt.photo_without_text(seed, (4032, 3024) if seed == 20 else (1600, 1200)).image) == []
    assert detected == [(1, 3, 224, 288), (1, 3, 128, 192)]  # the probes, rounded to multiples of 32
    assert len(recognised) == regions and all(shape[2] == 48 and shape[3] < 320 for shape in recognised)


@pytest.mark.parametrize("word, size, height", [("Kasse", (1600, 1200), 300), ("STOP", (4032, 3024), 1000),
                                                ("42", (1600, 1200), 500)])
def test_a_word_that_fills_the_photo_is_read_from_the_copy(reader, word, size, height):
    """Letters a third of the photo high: the probes see one big region, read from the copy alone."""
    sign = rt.sign_photo(word, size=size, seed=900, text_height=height, at=(0.05, 0.1))
    decoded: list[int] = []
    lines = reader.read(embedding_copy(sign), lambda: decoded.append(1) or sign.image, size)
    assert [line.text for line in lines] == [word] and lines[0].confidence >= 0.9 and decoded == []
    assert inside(lines[0].box, sign.where, slack=size[0] // 20)


def test_the_probe_finds_the_regions_the_engine_finds(reader):
    """The detection model is run directly, with the engine's own steps: the same regions as its pipeline,
    a thin strip padded as it pads one included."""
    from findimage.models.text_reader import _bgr

    detection = reader._detection
    banner = Image.new("RGB", (1500, 30), "white")
    ImageDraw.Draw(banner).text((10, 4), "Sommerfest am Freitag", font=rt.font(20), fill="black")
    pictures = [rt.street_sign().image, rt.page_photo().image.resize((640, 480)), rt.error_dialog().image,
                embedding_copy(rt.photo_without_text(20, (4032, 3024))), banner]
    for picture in pictures:
        pixels = _bgr(np.asarray(picture))
        for threshold in (0.4, 0.5):
            found = reader._engine(pixels, use_cls=False, use_rec=False, box_thresh=threshold)
            expected = [] if found.boxes is None else [np.asarray(b, np.float32) for b in found.boxes]
            regions = detection.regions(pixels, threshold)
            assert len(regions) == len(expected)
            assert all(np.allclose(a, b) for a, b in zip(regions, expected, strict=True))
    assert detection.regions(_bgr(np.asarray(banner)), 0.4)  # the strip's line is found


def embedding_copy(picture: rt.Rendered) -> Image.Image:
    """What the indexer keeps of a picture it embeds: its pixels decoded for the model (a JPEG drafted down to
    224 px), at the probe's size."""
    out = io.BytesIO()
    if picture.kind in ("screenshot", "slide"):
        picture.image.save(out, "PNG")
    else:
        picture.image.save(out, "JPEG", quality=92)
    return probe_copy(prepare_bytes(out.getvalue(), 224).image)


def test_a_photo_is_probed_on_the_embedding_copy_and_decoded_whole_only_where_the_probe_finds_text(reader):
    decoded: list[str] = []
    read: dict[str, list[TextLine]] = {}
    pictures = [rt.photo_without_text(6, (4032, 3024)), rt.photo_without_text(5), rt.large_photo_with_small_sign(),
                rt.street_sign(), rt.error_dialog()]
    for picture in pictures:
        copy = embedding_copy(picture)
        assert max(copy.size) <= max(PROBE_SIDES) == 288
        read[picture.kind] = reader.read(copy, lambda p=picture: decoded.append(p.kind) or p.image, picture.image.size)
    assert decoded == ["sign", "sign", "screenshot"], "photos without text: read from the copy alone"
    assert read["photo"] == []
    sign = rt.street_sign()
    assert [line.text for line in read["sign"]] == [rt.STREET_SIGN] and inside(read["sign"][0].box, sign.where)
    assert rt.ERROR_DIALOG in [line.text for line in read["screenshot"]]


def test_lines_read_in_a_smaller_picture_have_their_corners_in_the_original_pixels(reader):
    sign = rt.large_photo_with_small_sign()  # 4032 x 3024
    half = sign.image.resize((2016, 1512))
    lines = reader.read(embedding_copy(sign), lambda: half, sign.image.size)
    assert [line.text for line in lines] == ["Bahnhofstraße 12"] and inside(lines[0].box, sign.where)


def test_screens_and_photos_are_told_apart():
    assert looks_like_screen(rt.error_dialog().image) and looks_like_screen(rt.german_slide().image)
    assert looks_like_screen(rt.as_jpeg(rt.german_slide().image, 75))
    assert not looks_like_screen(rt.street_sign().image)
    assert not looks_like_screen(rt.photo_without_text().image)
    for screen in (rt.error_dialog(), rt.german_slide()):  # also on the small copy the indexer keeps
        assert looks_like_screen(embedding_copy(screen))
        assert looks_like_screen(embedding_copy(rt.Rendered("photo", rt.as_jpeg(screen.image, 75), ())))
    for photo in (rt.street_sign(), rt.photo_without_text(), rt.page_photo()):
        assert not looks_like_screen(embedding_copy(photo))


def test_odd_pictures_are_read_without_failing(reader):
    assert reader.read(Image.new("RGB", (1, 1))) == []
    assert reader.read(Image.new("RGB", (5, 4000), "white")) == []
    assert reader.read(Image.new("RGB", (1280, 800), "white")) == []
    gray = rt.error_dialog().image.convert("L")
    assert rt.ERROR_DIALOG in [line.text for line in reader.read(gray)]
    banner = Image.new("RGBA", (3000, 60), (0, 0, 0, 0))  # black text on a transparent background
    ImageDraw.Draw(banner).text((20, 12), "Sommerfest am Freitag", font=rt.font(32), fill="black")
    assert [line.text for line in reader.read(banner)] == ["Sommerfest am Freitag"]


# ---- the engine ------------------------------------------------------------------------------------
def test_the_engine_runs_the_shipped_pp_ocrv6_models_with_the_reader_threads(reader):
    from rapidocr.inference_engine.base import FileInfo, InferSession
    from rapidocr.utils.typings import EngineType, ModelType, OCRVersion, TaskType

    params = reader.engine_params()
    for task, name in ((TaskType.DET, DET_MODEL), (TaskType.REC, REC_MODEL)):
        section = "Det" if task == TaskType.DET else "Rec"
        lang = params.get(f"{section}.lang_type", "ch")
        routed = InferSession.get_model_url(FileInfo(EngineType.ONNXRUNTIME, OCRVersion.PPOCRV6, task, lang,
                                                     ModelType.SMALL))
        assert Path(routed["model_dir"]).name == name == Path(params[f"{section}.model_path"]).name
        assert Path(params[f"{section}.model_path"]).is_file()  # in the wheel: nothing to download
    engine = reader._engine
    assert engine.text_cls is None  # the angle classifier is never loaded
    for part in (engine.text_det, engine.text_rec):
        options = part.session.session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_a_failing_engine_raises_one_exception_with_one_sentence(reader, monkeypatch):
    from rapidocr.inference_engine.onnxruntime.main import ONNXRuntimeError

    def broken(crops):
        raise ONNXRuntimeError("Traceback (most recent call last):\n  File x\nRuntimeException: bad input shape")

    monkeypatch.setattr(reader._engine, "recognize_txt", broken)
    with pytest.raises(TextReadingError) as caught:
        reader.read(rt.error_dialog().image)
    assert str(caught.value) == "Reading text in a 1280x800 picture failed: RuntimeException: bad input shape."


def test_an_engine_that_cannot_load_says_so(tmp_path):
    class Missing(TextReader):
        def engine_params(self):
            return {**super().engine_params(), "Rec.model_path": str(tmp_path / "gone.onnx")}

    reader = Missing()
    with pytest.raises(TextReadingError, match=r"^The text reading engine could not be loaded: .*gone\.onnx.*\.$"):
        reader.read(rt.error_dialog().image)
    with pytest.raises(TextReadingError):
        reader.load()


def test_settings_are_checked():
    with pytest.raises(ValueError):
        Tuning(det_max_side=0)
    with pytest.raises(ValueError):
        Tuning(screen_scale=0)
    with pytest.raises(ValueError):
        TextReader(threads=-1)


# ---- search words ----------------------------------------------------------------------------------
def test_words_fold_like_path_words():
    assert words(rt.ERROR_DIALOG) == ["error", "disk", "quota", "exceeded", "on", "volume", "srv", "data"]
    assert normalize("Umsatzprognose 2025 — Größenordnung und Überblick") == \
        "umsatzprognose 2025 grossenordnung und uberblick"
    assert normalize("Café Straße, ÄRGER!") == "cafe strasse arger" == normalize("cafe STRASSE arger")
    assert words("img_4711 DSC") == ["img", "4711", "dsc"]  # camera prefixes are words in read text
    assert normalize("") == "" and words(" — ") == []


def inside(box, where, slack: int = 40) -> bool:
    left, top, right, bottom = where
    return all(left - slack <= x <= right + slack and top - slack <= y <= bottom + slack for x, y in box)


def test_lines_are_recognised_in_batches_of_similar_width():
    from findimage.models.text_reader import _batches

    crops = [np.zeros((48, w, 3), np.uint8) for w in (100, 900, 300, 1000, 2000, 50, 950)]
    assert _batches(crops, 8) == [[0, 2, 5], [1, 6, 3], [4]]  # all below 320 px run at 320 px
    assert _batches(crops, 2) == [[0, 2], [5], [1, 6], [3], [4]]

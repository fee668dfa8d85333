"""Text in pictures (OCR), read cheaply enough to run on a whole archive, and cut into search words.

The engine is RapidOCR on onnxruntime with PaddleOCR's PP-OCRv6 small detection and recognition models,
both shipped inside the `rapidocr` wheel (nothing is downloaded at run time). The recogniser is
PP-OCRv6's multilingual one: English, German with ä ö ü ß, ~45 other Latin-script languages and Chinese.

Reading costs 20-50x what embedding a picture costs, so `TextReader.read` does less than the engine's
own pipeline (detection at up to 2000 px on every picture, every region recognised, an angle classifier):

0. A picture may come as a small copy (`probe_copy`: the indexer keeps one of the pixels it decoded for the
   embedding, a JPEG drafted down to 1/8) with a way to decode it whole: the copy tells screens from photos
   and is probed, and the picture is decoded whole only for a screen or a photo whose probe found a line.
1. Photos are probed: detection at 288 px on the long side (~25 ms), and at 192 px if that found no line
   (each size blurs away some text sizes the other sees; measured against the word recall they keep in
   benchmarks/text_reading.py --probes). No line: no text, reading stops (most archive photos); only big
   regions the detector took for text (a noisy sky) are recognised, from the copy, a few ms each, and kept
   if read with `sure_confidence`. Well-resolved lines (a sign; `probe_enough`) are recognised from the
   probe's regions in the whole picture if read with `sure_confidence`; otherwise detection runs again on
   the part of the photo around them, at up to full resolution (a printed page the probe saw as one block).
2. Screens (screenshots, slides: flat colour, told from photos on a sample of rows) skip the probe and
   keep at least `screen_scale` of their size for detection: their text is small in pixels.
3. Detection at a long side of at most `det_max_side` (or the screen's share); regions thinner than
   `min_box_height` dropped; the rest cut from the original picture (shrunk with area averaging to the
   recogniser's 48 px) and recognised in batches of similar width. No angle classifier (it only turns
   upside-down lines). Lines below `min_confidence`, or without a letter or digit, are dropped.

Known limit: in photos, text of 0.8-3% of the long side (a page photographed from a distance) is missed now
and then (98.9% of the words of 40 rendered pages: benchmarks/text_reading.py --probes 288,192 --pages 3); the
engine's own pipeline reads it.

`words()` and `normalize()` fold text as `names.py` folds path words (case, accents, ß -> ss), so a
query typed without umlauts or with "ss" finds the text.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from findimage import logs, names
from findimage.errors import TextReadingError
from findimage.imaging import ImageError, _to_rgb  # the decoder's conversion: transparency over white, 16-bit scaled
from findimage.records import TextLine

__all__ = ["TextLine", "TextReader", "TextReadingError", "Tuning", "normalize", "words"]

DET_MODEL, REC_MODEL = "PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"
REC_HEIGHT, REC_WIDTH = 48, 320  # the recogniser's input height and least width (rapidocr's Rec.rec_img_shape)
DET_LIMIT = 2048  # detection never runs on more than this many pixels a side
# The probes of a photo, largest first (TextReader.probe_sides): the first one's size is also the small copy's
# the indexer keeps of each picture it embeds (probe_copy), so a photo is probed without a decode of its own.
PROBE_SIDES = (288, 192)
SCREEN_SHARE = 0.6  # a picture whose pixels equal their right neighbour this often is a screen
ROWS_SAMPLED = 64


def words(text: str) -> list[str]:
    """The search words of read text, folded like path words: 'Größe' -> ['grosse'], 'ÜBERBLICK' ->
    ['uberblick'], '/srv/data' -> ['srv', 'data']; single letters dropped, numbers kept."""
    return names.words(text, drop=())


def normalize(text: str) -> str:
    """Read text as one searchable string: its words (see `words`) joined by single spaces."""
    return " ".join(words(text))


@dataclass(frozen=True)
class Tuning:
    """How much of a picture the reader looks at, and what it keeps (the defaults as measured by
    benchmarks/text_reading.py).

    probe_sides: long sides of the probes of a photo, tried in turn until one finds a line (empty: none).
    det_max_side: long side detection runs at (a screen keeps at least `screen_scale` of its size).
    min_box_height: regions thinner than this (original pixels) are not recognised.
    min_confidence: lines recognised with less confidence are dropped.
    sure_confidence: what a region the detector is unsure of must be read with to be kept: one thicker
    than `big_share` of the picture's short side (the detector takes some textures, or a whole sky, for
    text), or one of the probe's coarse regions read directly.
    probe_enough: where every line the probe found is at least this thick (probe pixels: the text is
    well resolved, a sign), its regions are recognised directly, without a second detection, if read
    with `sure_confidence`.
    box_thresh / probe_box_thresh: the detector's box score threshold (rapidocr's Det.box_thresh) for
    the detection and for the probe (lower: a more sensitive probe).
    rec_batch: lines recognised per model run (rapidocr's Rec.rec_batch_num).
    """

    probe_sides: tuple[int, ...] = PROBE_SIDES
    det_max_side: int = 640
    screen_scale: float = 0.5
    min_box_height: int = 8
    min_confidence: float = 0.6
    sure_confidence: float = 0.9
    big_share: float = 0.3
    probe_enough: float = 16
    box_thresh: float = 0.5
    probe_box_thresh: float = 0.4
    rec_batch: int = 8

    def __post_init__(self) -> None:
        if self.det_max_side < 32 or not 0 < self.screen_scale <= 1 or self.rec_batch < 1:
            raise ValueError("det_max_side >= 32, 0 < screen_scale <= 1 and rec_batch >= 1")


class TextReader:
    """Reads text in pictures with the cheap pipeline above, as `tuning` says. The engine is loaded once
    per instance, on `load()` or the first `read()`; one instance may be shared by threads (calls take turns).

    threads: onnxruntime threads per session (intra- and inter-op; 1 up to the machine's cores, as
    rapidocr applies them); 0 leaves onnxruntime's default (all cores).
    """

    def __init__(self, *, threads: int = 1, tuning: Tuning = Tuning()):
        if threads < 0:
            raise ValueError("threads >= 0")
        self.threads = threads
        self.tuning = tuning
        self._engine: Any = None
        self._detection: _Detection | None = None
        self._lock = threading.Lock()

    # ---- the engine --------------------------------------------------------------------------------
    def engine_params(self) -> dict[str, Any]:
        """The RapidOCR parameters this reader runs the engine with (`RapidOCR(params=...)`)."""
        from rapidocr import EngineType, ModelType, OCRVersion

        models = Path(_rapidocr_dir()) / "models"
        params: dict[str, Any] = {
            "Global.log_level": "error",  # not a warning line for every picture without text
            "Global.use_cls": False,
            "Global.use_preprocess_img": False,  # the reader sizes the pictures itself
            "Det.engine_type": EngineType.ONNXRUNTIME, "Rec.engine_type": EngineType.ONNXRUNTIME,
            "Det.ocr_version": OCRVersion.PPOCRV6, "Det.model_type": ModelType.SMALL,
            "Det.model_path": str(models / DET_MODEL),
            "Det.limit_type": "max", "Det.limit_side_len": DET_LIMIT, "Det.box_thresh": self.tuning.box_thresh,
            "Rec.ocr_version": OCRVersion.PPOCRV6, "Rec.model_type": ModelType.SMALL, "Rec.lang_type": "de",
            "Rec.model_path": str(models / REC_MODEL), "Rec.rec_batch_num": self.tuning.rec_batch,
        }
        if self.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = self.threads
        return params

    def load(self) -> None:
        """Load both models now (e.g. before the first picture of a pass), so `read` does not wait."""
        with self._lock:
            self._loaded()

    def _loaded(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr import RapidOCR

                logs.adopt(logging.getLogger("RapidOCR"))  # its own handler: made to write as this process logs
                engine = RapidOCR(params=self.engine_params())
                engine(np.zeros((64, 64, 3), np.uint8), use_cls=False, use_rec=False)  # detection model
                engine.recognize_txt([np.full((REC_HEIGHT, 96, 3), 255, np.uint8)])  # recognition model
            except Exception as exc:
                raise TextReadingError(f"The text reading engine could not be loaded: {_reason(exc)}.") from exc
            self._engine, self._detection = engine, _Detection.of(engine)
        return self._engine

    # ---- reading -----------------------------------------------------------------------------------
    def read(self, image: Image.Image, whole: Callable[[], Image.Image] | None = None,
             size: tuple[int, int] | None = None) -> list[TextLine]:
        """The lines of text in a picture (RGB, any size; other modes are converted as the decoder does),
        top to bottom, left to right, their corners in pixels of the picture's `size`. Raises
        TextReadingError (one sentence) if the engine fails.

        `image` is the picture, or a small copy of it (`probe_copy`: the pixels decoded for its embedding)
        with `whole()` giving the picture at the size the recogniser needs and `size` the original's: the
        copy decides whether it is a screen and a photo is probed on it, and `whole()` is called only for a
        screen or a photo whose probe found a line (most photos are read from the copy alone)."""
        try:
            with self._lock:
                engine = self._loaded()
                small = _to_rgb(image)
                return self._read(engine, small, (lambda: _to_rgb(whole())) if whole else (lambda: small),
                                  size or small.size)
        except (TextReadingError, ImageError):  # ImageError: `whole()` could not decode the picture
            raise
        except Exception as exc:
            shown = "x".join(map(str, size if size is not None else getattr(image, "size", ()))) or "?"
            raise TextReadingError(f"Reading text in a {shown} picture failed: {_reason(exc)}.") from exc

    def _read(self, engine: Any, small: Image.Image, whole: Callable[[], Image.Image],
              size: tuple[int, int]) -> list[TextLine]:
        if min(size) < self.tuning.min_box_height:
            return []
        screen = looks_like_screen(small)
        if screen or not self.tuning.probe_sides or max(size) <= max(self.tuning.probe_sides):
            picture = whole()
            region = (0, 0, *picture.size)
        else:
            sw, sh = small.size
            big = self.tuning.big_share * min(sw, sh)
            for side in self.tuning.probe_sides:  # the next probe sees the text sizes this one blurs into nothing
                scale = min(1.0, side / max(sw, sh))
                probe = self._detect(small, scale, self.tuning.probe_box_thresh)
                lines = [b for b in probe if _thickness(b) <= big]
                if lines:
                    break
            else:  # nothing line-sized: read the big regions, if any, from the copy (a few big letters each)
                return _resized(self._recognise(engine, small, probe, big, alone=True), small.size, size)
            thinnest = min(_thickness(b) for b in lines) * scale  # in the probe's pixels
            picture = whole()  # the probe found a line: read it at the recogniser's size
            factor = np.array([picture.width / sw, picture.height / sh], np.float32)
            probe, lines = [b * factor for b in probe], [b * factor for b in lines]
            if thinnest >= self.tuning.probe_enough:
                read = self._recognise(engine, picture, probe, 0.0)  # the probe's coarse regions, if read surely
                if len(read) == len(probe):
                    return _resized(read, picture.size, size)
            region = _around(lines, *picture.size)
        w, h = picture.size
        part = picture if region == (0, 0, w, h) else picture.crop(region)
        scale = self.tuning.det_max_side / max(part.size)
        if screen:
            scale = max(scale, self.tuning.screen_scale)
        offset = np.array(region[:2], np.float32)
        boxes = [b + offset for b in self._detect(part, min(1.0, scale, DET_LIMIT / max(part.size)),
                                                   self.tuning.box_thresh)]
        found = self._recognise(engine, picture, [b for b in boxes if _thickness(b) >= self.tuning.min_box_height],
                                self.tuning.big_share * min(w, h))
        return _resized(found, picture.size, size)

    def _recognise(self, engine: Any, image: Image.Image, boxes: list[np.ndarray], big: float,
                   alone: bool = False) -> list[TextLine]:
        """The lines read in `boxes` of `image`, in batches of similar width, or with `alone` each at its own
        width (`_read_alone`)."""
        if not boxes:
            return []
        crops = [_crop(image, b) for b in boxes]
        if alone:
            read = [_read_alone(engine, crop) for crop in crops]
        else:
            read = [("", 0.0)] * len(crops)
            for batch in _batches(crops, self.tuning.rec_batch):
                found = engine.recognize_txt([crops[i] for i in batch])
                for i, text, score in zip(batch, found.txts, found.scores, strict=True):
                    read[i] = (text, score)
        lines = []
        for box, (text, score) in zip(boxes, read, strict=True):
            needed = self.tuning.sure_confidence if _thickness(box) > big else self.tuning.min_confidence
            if score >= needed and any(c.isalnum() for c in text):  # punctuation alone is not searchable
                corners = tuple((int(round(x)), int(round(y))) for x, y in box)
                lines.append(TextLine(text.strip(), corners, round(float(score), 4)))
        return lines

    def _detect(self, image: Image.Image, scale: float, box_thresh: float) -> list[np.ndarray]:
        """Text regions found at `scale` by the loaded engine's detection, as 4x2 corner arrays in the original
        picture's pixels."""
        w, h = image.size
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = image if size == image.size else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        factor = np.array([w / size[0], h / size[1]], np.float32)
        assert self._detection is not None  # made with the engine
        return [b * factor for b in self._detection.regions(_bgr(np.asarray(small)), box_thresh)]


@dataclass(frozen=True)
class _Detection:
    """The engine's text detection, its steps called directly (padding a thin strip, sizing, the model, DB
    post-processing, sorting): the same regions as its pipeline, without what that pipeline also does (load the
    picture again, cut every region out, normalise in float64, make its sizing anew from its config): a
    quarter of a probe's cost besides the model."""

    engine: Any
    sizing: Any  # rapidocr's DetPreProcess: multiples of 32, at most DET_LIMIT a side
    factor: np.ndarray  # its normalisation, (pixel * scale - mean) / std per channel, as one multiply ...
    offset: np.ndarray  # ... and one subtraction

    @classmethod
    def of(cls, engine: Any) -> _Detection:
        sizing = engine.text_det.get_preprocess()
        channel = (slice(None), np.newaxis, np.newaxis)
        return cls(engine, sizing, (sizing.scale / sizing.std).astype(np.float32)[channel],
                   (sizing.mean / sizing.std).astype(np.float32)[channel])

    def regions(self, bgr: np.ndarray, box_thresh: float) -> list[np.ndarray]:
        """The text regions in a BGR picture, detected at its size (rounded to multiples of 32), as 4x2 corner
        arrays in its pixels, top to bottom, left to right."""
        from rapidocr.utils.process_img import apply_vertical_padding

        detector = self.engine.text_det
        h, w = bgr.shape[:2]
        padded, record = apply_vertical_padding(bgr, {}, self.engine.width_height_ratio, self.engine.min_height)
        sized = self.sizing.resize(padded)
        if sized is None:
            return []
        pixels = sized.transpose(2, 0, 1).astype(np.float32)
        pixels *= self.factor
        pixels -= self.offset
        detector.postprocess_op.box_thresh = box_thresh  # as the engine sets it for a call
        boxes, _ = detector.postprocess_op(detector.session(pixels[np.newaxis]), padded.shape[:2])
        if len(boxes) == 0:
            return []
        boxes = detector.sorted_boxes(boxes).astype(np.float32)
        boxes[:, :, 1] -= record["padding_1"]["top"]
        boxes[:, :, 0] = boxes[:, :, 0].clip(0, w)
        boxes[:, :, 1] = boxes[:, :, 1].clip(0, h)
        return list(boxes)


def _read_alone(engine: Any, crop: np.ndarray) -> tuple[str, float]:
    """One line recognised at its own width (at least square) rather than padded to the recogniser's least
    width as its batches are (REC_WIDTH: the model's cost follows the width): a big region of a photo, a few
    big letters, costs ~6 ms instead of ~31."""
    recogniser = engine.text_rec
    ratio = crop.shape[1] / crop.shape[0]
    pixels = recogniser.resize_norm_img(crop, max(1.0, ratio))[np.newaxis].astype(np.float32)
    lines, _ = recogniser.postprocess_op(recogniser.session(pixels), False, wh_ratio_list=[ratio],
                                         max_wh_ratio=max(1.0, ratio))
    text, score = lines[0]
    return text, float(score)


def looks_like_screen(image: Image.Image) -> bool:
    """Whether the picture is a screenshot or a slide rather than a photo: flat colour, where most pixels
    equal their right neighbour exactly (photos have sensor noise). Decided on a sample of rows."""
    w, h = image.size
    if w < 2:
        return False
    rows = np.asarray(image.resize((w, min(h, ROWS_SAMPLED)), Image.Resampling.NEAREST))  # rows as they are, spread
    same = np.all(rows[:, 1:] == rows[:, :-1], axis=-1)
    return float(same.mean()) >= SCREEN_SHARE


def probe_copy(image: Image.Image, side: int = PROBE_SIDES[0]) -> Image.Image:
    """The small copy a photo is probed on: the picture (as decoded for its embedding: a JPEG drafted down to
    the model's input) at `side` pixels on its long side (the first probe's size), or as it is if smaller;
    RGB as the decoder gives it. What the indexer keeps of a picture for reading its text."""
    w, h = image.size
    scale = side / max(w, h)
    if scale >= 1:
        return image
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR,
                        reducing_gap=2.0)


def _resized(lines: list[TextLine], read_in: tuple[int, int], size: tuple[int, int]) -> list[TextLine]:
    """Lines read in a picture of `read_in` pixels with their corners in pixels of `size` (the original's)."""
    if read_in == size or not lines:
        return lines
    fx, fy = size[0] / read_in[0], size[1] / read_in[1]
    return [replace(line, box=tuple((int(round(x * fx)), int(round(y * fy))) for x, y in line.box))
            for line in lines]


def _batches(crops: list[np.ndarray], size: int, spread: float = 1.25) -> list[list[int]]:
    """Crops to recognise together: up to `size` of similar width (a batch runs at its widest crop's
    width, and at least at the recogniser's 320 px), so that padding costs little."""
    widths = [max(REC_WIDTH, REC_HEIGHT * c.shape[1] / max(1, c.shape[0])) for c in crops]
    batches: list[list[int]] = []
    for i in sorted(range(len(crops)), key=widths.__getitem__):
        if batches and len(batches[-1]) < size and widths[i] <= spread * widths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _around(boxes: list[np.ndarray], w: int, h: int) -> tuple[int, int, int, int]:
    """The part of a w x h picture the probe's regions lie in, with a margin (the probe is coarse)."""
    corners = np.concatenate(boxes)
    margin = max(_thickness(b) for b in boxes) + 0.03 * max(w, h)
    (x0, y0), (x1, y1) = corners.min(axis=0) - margin, corners.max(axis=0) + margin
    return max(0, int(x0)), max(0, int(y0)), min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))


def _thickness(box: np.ndarray) -> float:
    """The thickness of a region: its shorter side (a line's height; a vertical line's width)."""
    height = max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))
    width = max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))
    return float(min(height, width))


def _crop(image: Image.Image, box: np.ndarray) -> np.ndarray:
    """The region cut from the original picture, straightened, shrunk to the recogniser's height (BGR)."""
    import cv2
    from rapidocr.utils.process_img import get_rotate_crop_image

    w, h = image.size
    x0, y0 = (max(0, math.floor(v) - 2) for v in box.min(axis=0))
    x1, y1 = min(w, math.ceil(box[:, 0].max()) + 2), min(h, math.ceil(box[:, 1].max()) + 2)
    region = image.crop((x0, y0, x1, y1))
    step = max(1, int(_thickness(box) // (2 * REC_HEIGHT)))  # big letters: a box filter first, cheap
    if step > 1:
        region = region.reduce(step)
    points = ((box - np.array([x0, y0], np.float32)) / step).astype(np.float32)
    line = get_rotate_crop_image(_bgr(np.asarray(region)), points)
    if line.shape[0] > REC_HEIGHT:
        width = max(1, round(line.shape[1] * REC_HEIGHT / line.shape[0]))
        line = cv2.resize(line, (width, REC_HEIGHT), interpolation=cv2.INTER_AREA)
    return line


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _rapidocr_dir() -> str:
    import rapidocr

    return str(Path(rapidocr.__file__).parent)


def _reason(exc: BaseException) -> str:
    """The last line of an exception's message (onnxruntime's carry a traceback), short, without a period."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return (text if len(text) <= 200 else text[:197] + "...").rstrip(".")

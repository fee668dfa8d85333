"""Near-identical pictures: a fingerprint of the pixels that a picture keeps through resizing,
re-compression, format conversion, a crop of up to ~10% of a side, EXIF rotation (applied by the caller)
and a small caption or watermark, and that another shot of the same scene does not share.

Why not a few 64-bit perceptual hashes compared by Hamming distance: a pHash (imagehash's, or any global
DCT hash) that tolerates a 10% crop and a caption band is too coarse to tell another shot of the scene
(objects moved, light from another side) from the picture itself, and one fine enough to tell them apart
changes under a 1% crop (docs/performance.md, "Near-identical pictures"). So two pictures are compared
on their fine structure after aligning them, and hashes only find the pairs worth comparing:

- What is kept (`Fingerprint`, 348 characters as `to_string`): the picture's luminance as a 16 x 16
  grid of grey levels (read at 64 x 64, blurred, reduced: smooth enough that its 2-D DCT interpolates
  it between cells, so a crop is undone to a fraction of a cell without the pixels), and its aspect
  ratio (a crop's scale on one axis fixes the other's).
- Window codes (derived, `codes()`): for 16 windows of the picture (per axis: the whole, 10% cut from
  either end, 5% from both ends), the signs of the window's 63 lowest DCT coefficients, lowest
  frequencies first: pHash's idea, for a window. A copy cut by up to 10% shows, within 2.5% per side,
  what some window of the original does through some window of its own, so the two share (nearly) that
  pair's code. imagehash is not used: its hashes are of a whole picture and need its pixels, these are
  derived from the kept grid (a store recomputes them from what it keeps), in a few lines of numpy.
- Lookup (`keys()`, `probes()`): a key is a code's top KEY_BITS bits; a picture has at most 16. A store
  indexes the keys as plain integers and looks up a picture's probes: its keys, each also with every
  combination of its 3 least certain bits flipped (at most 128). Any hit is a candidate; `same_picture`
  decides.

`same_picture` starts from the pair of windows whose codes are closest, searches offsets and scale
around it (2.5%, then 1.25% steps), and compares the two grids inside their overlap less a one-cell
margin (where a caption band or a cut edge is), each normalised for brightness and contrast, leaving out
the 5% most different cells (a watermark, a sticker): the mean difference must be at most SAME_THRESHOLD.

Input: a decoded picture (any mode) with its EXIF orientation applied, at least MIN_SIDE (64) px on its
short side: the indexer's 224-px picture is plenty (the fingerprint reads it at 64 x 64), and a JPEG may
be drafted (findimage.imaging) down to that. Smaller pictures are fingerprinted too, less reliably.
"""
from __future__ import annotations

import base64
import math
import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFilter

VERSION = 1
MIN_SIDE = 64  # the short side a picture should have; the fingerprint reads it at 64 x 64
GRID = 16  # the kept grid's side
KEY_BITS = 24  # a lookup key: a window code's lowest-frequency bits
SAME_THRESHOLD = 0.11  # aligned mean difference (in contrast units) up to which two pictures are the same

_READ = 64  # the picture is read at this size, blurred, then reduced to GRID
_BLUR = 1.5  # Gaussian sigma at _READ px
_AXIS_WINDOWS = ((0.0, 0.0), (0.1, 0.0), (0.0, 0.1), (0.05, 0.05))  # (cut at the start, cut at the end)
WINDOWS = tuple((y, x) for y in _AXIS_WINDOWS for x in _AXIS_WINDOWS)
_CODE_SIDE = 8  # a code: the signs of a window's 8 x 8 lowest DCT coefficients less the DC one
_LOOKUP_FLIPS = 3  # probes(): each key with every combination of its 3 least certain bits flipped (8 per window)
_GROUP_FLIPS = 2  # group(): 2 (4 per window; a copy missed there is found through the others in its group)
_TRIM = 0.05  # the share of most different cells left out of the mean
_STEP = 0.0125  # the alignment search's finest step (a fraction of a side)
_MIN_OVERLAP = 0.75  # the share of each side two copies must have in common
_ASPECT_APART = 0.6  # log2 of the largest aspect ratio change two copies may show (crops of 20%: 0.32)
_LEVELS = 32  # grey levels the mean brightness of two copies may differ by
_CONTRAST = 1.5  # ratio their contrast (the spread of their grey levels) may differ by
_HINTS = 3  # same_picture starts from this many pairs of windows (the closest codes)
_CODE_BITS_APART = 11  # group(): closest window codes of two copies differ in at most this many (measured: 11)
_MAX_BUCKET = 256  # group(): a key shared by more windows pairs each probe with the first ones only
_TRIES = 2  # group(): comparisons between two groups that found them different before the pair is left

_PACK = struct.Struct(f"<Bh{GRID * GRID}s")  # version, log2(aspect) in 1/4096, grid
_ASPECT_UNITS = 4096


@dataclass(frozen=True)
class Fingerprint:
    """What findimage keeps of a picture's pixels to recognise its near-identical copies."""

    grid: bytes  # GRID x GRID grey levels, row by row
    aspect_units: int  # log2(width / height) * 4096, rounded

    @property
    def aspect(self) -> float:
        return 2.0 ** (self.aspect_units / _ASPECT_UNITS)

    def codes(self) -> tuple[int, ...]:
        """The 16 window codes (unsigned 64-bit; WINDOWS' order)."""
        return tuple(int(c) for c in _codes(self._coefficients))

    def keys(self) -> tuple[int, ...]:
        """What a store indexes: integers below 2**KEY_BITS, at most 16, sorted."""
        return tuple(sorted({int(k) for k in _keys(self._coefficients[None])[0]}))

    def probes(self) -> tuple[int, ...]:
        """What a lookup asks for: the pictures whose keys include any of these (at most 128) are the
        candidates to compare with same_picture."""
        probes = _codes_and_probes(self._coefficients[None], _LOOKUP_FLIPS)[1]
        return tuple(sorted({int(p) for p in probes.reshape(-1)}))

    def to_string(self) -> str:
        """A compact ASCII form (348 characters) for a store's text or keyword field."""
        return base64.urlsafe_b64encode(_PACK.pack(VERSION, self.aspect_units, self.grid)).decode("ascii")

    @classmethod
    def from_string(cls, text: str) -> Fingerprint:
        try:
            version, aspect_units, grid = _PACK.unpack(base64.urlsafe_b64decode(text.encode("ascii")))
        except (ValueError, struct.error) as exc:
            raise ValueError(f"not a picture fingerprint ({exc})") from None
        _check_version(version)
        return cls(grid, aspect_units)

    def to_ints(self) -> tuple[int, ...]:
        """The fingerprint as 33 signed 64-bit integers (for a store's integer columns): the version and
        aspect, then the grid, 8 cells each."""
        cells = struct.unpack(f"<{GRID * GRID // 8}q", self.grid)
        return ((VERSION << 32) | (self.aspect_units & 0xFFFF), *cells)

    @classmethod
    def from_ints(cls, values: Iterable[int]) -> Fingerprint:
        head, *cells = values
        if len(cells) != GRID * GRID // 8:
            raise ValueError(f"a picture fingerprint has {GRID * GRID // 8 + 1} integers, not {len(cells) + 1}")
        _check_version(head >> 32)
        aspect_units = head & 0xFFFF
        return cls(struct.pack(f"<{len(cells)}q", *cells), aspect_units - (1 << 16) * (aspect_units >= 1 << 15))

    @cached_property
    def _coefficients(self) -> np.ndarray:
        return _dct(np.frombuffer(self.grid, np.uint8).reshape(GRID, GRID))


def _check_version(version: int) -> None:
    if version != VERSION:
        raise ValueError(f"a picture fingerprint of version {version} (this findimage reads version {VERSION})")


def fingerprint(image: Image.Image) -> Fingerprint:
    """The fingerprint of a decoded picture (EXIF orientation applied; MIN_SIDE px or more on its short side)."""
    grey = image.convert("L").resize((_READ, _READ), Image.Resampling.LANCZOS)
    grey = grey.filter(ImageFilter.GaussianBlur(_BLUR)).resize((GRID, GRID), Image.Resampling.BILINEAR)
    width, height = image.size
    aspect_units = round(math.log2(width / height) * _ASPECT_UNITS)
    return Fingerprint(grey.tobytes(), max(-32767, min(32767, aspect_units)))  # as kept: 16 bits


def same_picture(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether a and b are the same picture (near-identical copies), not merely similar ones."""
    return distance(a, b, enough=SAME_THRESHOLD) <= SAME_THRESHOLD


def distance(a: Fingerprint, b: Fingerprint, enough: float = 0.0) -> float:
    """How different a and b are once aligned: 0 for the same pixels, SAME_THRESHOLD the line between the
    same picture and another one. The search stops at an alignment at most `enough` apart."""
    code_a, code_b = _codes(a._coefficients), _codes(b._coefficients)
    apart = _hamming(code_a[:, None], code_b[None, :]).reshape(-1)
    hints = np.argsort(apart, kind="stable")[:_HINTS]
    count = len(hints)
    scores = _aligned(np.repeat(a._coefficients[None], count, 0), np.repeat(b._coefficients[None], count, 0),
                      np.full(count, a.aspect / b.aspect), hints // len(WINDOWS), hints % len(WINDOWS), enough)
    return float(scores.min())


# ---- the DCT: codes, keys, probes --------------------------------------------------------------------
def _basis(positions: np.ndarray) -> np.ndarray:
    """Rows evaluating a GRID-point orthonormal DCT-II series at `positions` (fractions of the side):
    cos(pi u (2p + 1) / 2N) at grid position p = position * N - 1/2."""
    u = np.arange(GRID)
    weight = np.where(u == 0, math.sqrt(1 / GRID), math.sqrt(2 / GRID))
    return (weight * np.cos(np.pi * u * positions[..., None])).astype(np.float32)


def _cells(start: float, end: float, count: int = GRID) -> np.ndarray:
    """The centres of `count` equal cells between start and end."""
    return start + (np.arange(count) + 0.5) / count * (end - start)


_DCT = _basis(_cells(0.0, 1.0)).T  # the orthonormal GRID-point DCT-II matrix


def _dct(grids: np.ndarray) -> np.ndarray:
    """The 2-D DCT-II coefficients (orthonormal) of GRID x GRID grids."""
    return (_DCT @ grids.astype(np.float32) @ _DCT.T).astype(np.float32)


# Per axis window: the matrix taking the whole picture's GRID coefficients to the window's lowest ones.
_WINDOW_PROJECTIONS = np.stack([_DCT[:_CODE_SIDE] @ _basis(_cells(cut, 1 - end))
                                for cut, end in _AXIS_WINDOWS])
_ORDER = sorted(((u, v) for u in range(_CODE_SIDE) for v in range(_CODE_SIDE) if u or v), key=lambda uv: (sum(uv), uv))
_ORDER_FLAT = np.array([u * _CODE_SIDE + v for u, v in _ORDER])  # lowest frequency first


def _window_coefficients(coefficients: np.ndarray) -> np.ndarray:
    """(picture, window, 63): each window's lowest DCT coefficients in code order."""
    whole = coefficients.reshape(-1, 1, GRID, GRID)
    rows = _WINDOW_PROJECTIONS @ whole  # (picture, y window, 8, GRID)
    low = rows[:, :, None] @ _WINDOW_PROJECTIONS.swapaxes(-1, -2)  # (picture, y window, x window, 8, 8)
    return np.take(low.reshape(len(whole), len(WINDOWS), _CODE_SIDE * _CODE_SIDE), _ORDER_FLAT, axis=-1)


def _codes(coefficients: np.ndarray) -> np.ndarray:
    """(window,) or (picture, window) unsigned 64-bit codes."""
    return _codes_of(_window_coefficients(coefficients)).reshape(coefficients.shape[:-2] + (len(WINDOWS),))


def _codes_of(low: np.ndarray) -> np.ndarray:
    """The signs of the 63 coefficients as the top 63 bits of an unsigned 64-bit integer, the first the
    highest."""
    bits = np.concatenate([low > 0, np.zeros(low.shape[:-1] + (1,), bool)], axis=-1)
    return np.packbits(bits, axis=-1).view(">u8")[..., 0].astype(np.uint64)


def _keys(coefficients: np.ndarray) -> np.ndarray:
    """(picture, window) keys."""
    return _codes(coefficients) >> np.uint64(64 - KEY_BITS)


def _codes_and_probes(coefficients: np.ndarray, flips: int) -> tuple[np.ndarray, np.ndarray]:
    """(picture, window) codes, and (picture, window, 2**flips) probes: each window's key with every
    combination of its `flips` least certain bits (its smallest coefficients) flipped."""
    low = _window_coefficients(coefficients)
    codes = _codes_of(low)
    strength = np.abs(low[..., :KEY_BITS])
    weakest = []
    for _ in range(flips):  # the smallest few by repeated argmin: cheaper than sorting them all
        weakest.append(np.argmin(strength, axis=-1))
        np.put_along_axis(strength, weakest[-1][..., None], np.inf, axis=-1)
    bits = np.uint64(1) << (KEY_BITS - 1 - np.stack(weakest, axis=-1)).astype(np.uint64)  # (picture, window, flips)
    combos = np.array([[(c >> i) & 1 for i in range(flips)] for c in range(2 ** flips)], dtype=np.uint64)
    masks = np.bitwise_xor.reduce(bits[..., None, :] * combos, axis=-1)  # (picture, window, combination)
    return codes, (codes >> np.uint64(64 - KEY_BITS))[..., None] ^ masks


_ONES = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits apart of unsigned 64-bit codes (numpy's bitwise_count needs numpy 2)."""
    apart = np.ascontiguousarray(np.bitwise_xor(a, b))
    return _ONES[apart.view(np.uint8).reshape(apart.shape + (8,))].sum(axis=-1, dtype=np.int64)


# ---- alignment ------------------------------------------------------------------------------------
_TABLE_STEPS = 4096  # positions are looked up in 1/4096 of a side (1/256 of a cell)
_TABLE = _basis(np.arange(-_TABLE_STEPS // 2, 2 * _TABLE_STEPS + 1) / _TABLE_STEPS)


def _sampler(positions: np.ndarray) -> np.ndarray:
    """_basis at `positions` (within the overlap: between 0 and 1), from the table."""
    index = np.rint(np.clip(positions, -0.5, 2.0) * _TABLE_STEPS).astype(np.int64)
    return _TABLE[index + _TABLE_STEPS // 2]


def _axis_start(window_a: tuple[float, float], window_b: tuple[float, float]) -> tuple[float, float]:
    """(offset, scale) on an axis such that x_b = (x_a - offset) / scale, where window_a of picture a shows
    what window_b of picture b does."""
    (cut_a, end_a), (cut_b, end_b) = window_a, window_b
    scale = (1 - cut_a - end_a) / (1 - cut_b - end_b)
    return cut_a - cut_b * scale, scale


_STARTS = np.array([[*_axis_start(xa, xb), *_axis_start(ya, yb)]
                    for ya, xa in WINDOWS for yb, xb in WINDOWS]).reshape(len(WINDOWS), len(WINDOWS), 4)


def _samplers(offsets: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For alignments of an axis (offset, scale): the rows sampling picture a and picture b at the same
    places (the overlap's cells less its first and last), and the overlap's share of the smaller side."""
    low = np.maximum(0.0, offsets)
    high = np.minimum(1.0, offsets + scales)
    inner = (np.arange(1, GRID - 1) + 0.5) / GRID
    at_a = low[..., None] + inner * (high - low)[..., None]
    at_b = (at_a - offsets[..., None]) / scales[..., None]
    return _sampler(at_a), _sampler(at_b), np.minimum(high - low, (high - low) / scales)


def _normalised(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells (last axis) less their mean, in units of their spread (at least 4 grey levels), and that mean
    and spread."""
    mean = cells.mean(axis=-1, keepdims=True)
    spread = np.maximum(cells.std(axis=-1, keepdims=True), 4.0)
    return (cells - mean) / spread, mean[..., 0], spread[..., 0]


def _search(a: np.ndarray, b: np.ndarray, ratio: np.ndarray, start: np.ndarray, step: float, offset_steps: int,
            scale_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """For pairs (coefficients a[i], b[i], aspect ratio a / b ratio[i]): the best score on a grid of
    alignments around start[i] = (x offset, y offset, x scale), and that alignment."""
    offsets = np.arange(-offset_steps, offset_steps + 1) * step
    scales = start[:, 2:3] * (1 + np.arange(-scale_steps, scale_steps + 1) * step)  # (pair, scale)
    across = np.repeat(scales[..., None], len(offsets), -1)
    ax, bx, overlap_x = _samplers(start[:, 0, None, None] + offsets, across)
    ay, by, overlap_y = _samplers(start[:, 1, None, None] + offsets, across * ratio[:, None, None])
    pairs, sizes, count, side = len(a), scales.shape[1], len(offsets), GRID - 2

    def sampled(coefficients: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(pair, scale, y offset, x offset, cells): two matrix products per pair and scale."""
        left = (rows.reshape(pairs, -1, GRID) @ coefficients).reshape(pairs, sizes, count * side, GRID)
        grids = left @ columns.reshape(pairs, sizes, count * side, GRID).swapaxes(-1, -2)
        grids = grids.reshape(pairs, sizes, count, side, count, side).swapaxes(3, 4)
        return grids.reshape(pairs, sizes, count, count, side * side)

    shape_a, mean_a, spread_a = _normalised(sampled(a, ay, ax))
    shape_b, mean_b, spread_b = _normalised(sampled(b, by, bx))
    diff = np.abs(shape_a - shape_b)
    keep = int(side * side * (1 - _TRIM))
    score = np.partition(diff, keep, axis=-1)[..., :keep].mean(axis=-1)
    # The shapes are compared regardless of brightness and contrast (a re-save may change them a little),
    # but a plain black picture is not a plain white one.
    score[np.abs(mean_a - mean_b) > _LEVELS] = np.inf
    score[np.maximum(spread_a, spread_b) > _CONTRAST * np.minimum(spread_a, spread_b)] = np.inf
    score[~((overlap_y >= _MIN_OVERLAP)[:, :, :, None] & (overlap_x >= _MIN_OVERLAP)[:, :, None, :])] = np.inf
    flat = score.reshape(pairs, -1)
    best = np.argmin(flat, axis=1)
    s, y, x = np.unravel_index(best, score.shape[1:])
    found = np.stack([start[:, 0] + offsets[x], start[:, 1] + offsets[y], scales[np.arange(pairs), s]], axis=1)
    return flat[np.arange(pairs), best], found


def _aligned(a: np.ndarray, b: np.ndarray, ratio: np.ndarray, window_a: np.ndarray, window_b: np.ndarray,
             enough: float) -> np.ndarray:
    """For pairs of pictures (coefficients, aspect ratio a / b), the smallest difference over alignments near
    the one in which window_a[i] of a shows what window_b[i] of b does: that one first (resized and
    re-compressed copies, crops of a window's 10%), then around it in 2.5% steps, then in 1.25% steps around
    the best, each only for pairs none of whose alignments so far is at most `enough` apart."""
    score = np.full(len(a), np.inf)
    # Crops of up to 10% per side change the aspect ratio by less than this: other pairs are not copies.
    plausible = np.flatnonzero(np.abs(np.log2(ratio)) <= _ASPECT_APART)
    if len(plausible):
        score[plausible] = _aligned_plausible(a[plausible], b[plausible], ratio[plausible], window_a[plausible],
                                              window_b[plausible], enough)
    return score


def _aligned_plausible(a: np.ndarray, b: np.ndarray, ratio: np.ndarray, window_a: np.ndarray,
                       window_b: np.ndarray, enough: float) -> np.ndarray:
    offset_x, scale_x, offset_y, scale_y = _STARTS[window_a, window_b].T
    # A crop does not stretch: the aspect ratios tie the y scale to the x one. The windows' scales (0.9, 1
    # or 1/0.9 only) give the first guess between them.
    start = np.stack([offset_x, offset_y, np.sqrt(scale_x * scale_y / ratio)], axis=1)
    score, found = _search(a, b, ratio, start, _STEP, 0, 0)
    for step, offset_steps, scale_steps in ((2 * _STEP, 2, 2), (_STEP, 1, 1)):
        again = np.flatnonzero(score > enough)
        if not len(again):
            break
        better, where = _search(a[again], b[again], ratio[again], found[again], step, offset_steps, scale_steps)
        improved = better < score[again]
        score[again[improved]], found[again[improved]] = better[improved], where[improved]
    return score


# ---- grouping -----------------------------------------------------------------------------------------
K = TypeVar("K", bound=Hashable)


def group(items: Iterable[tuple[K, Fingerprint]]) -> list[list[K]]:
    """Groups of near-identical pictures, two or more each, members in the order given: pairs found by
    probes and keys whose window codes are close, confirmed by same_picture's comparison, joined
    transitively (a copy of a copy is in its original's group)."""
    names, grids, aspects = [], [], []
    for name, fp in items:
        names.append(name)
        grids.append(fp.grid)
        aspects.append(fp.aspect)
    if len(names) < 2:
        return []
    coefficients = _dct(np.frombuffer(b"".join(grids), np.uint8).reshape(-1, GRID, GRID))
    aspect = np.array(aspects)
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pending = _candidates(coefficients)
    tried: dict[tuple[int, int], int] = {}
    # In rounds, each group so far in at most one comparison per round, a round's all at once: n copies
    # of a picture take about n comparisons (not n^2), and numpy works on many pairs per call.
    while pending:
        chosen: list[tuple[int, int, int, int]] = []
        waiting: list[tuple[int, int, int, int]] = []
        busy: set[int] = set()
        for candidate in pending:
            ra, rb = root(candidate[0]), root(candidate[1])
            if ra == rb or tried.get((min(ra, rb), max(ra, rb)), 0) >= _TRIES:
                continue
            if ra in busy or rb in busy:
                waiting.append(candidate)
                continue
            busy.update((ra, rb))
            chosen.append(candidate)
        if not chosen:
            break
        firsts, seconds, windows_a, windows_b = (np.array(column) for column in zip(*chosen, strict=True))
        scores = _aligned(coefficients[firsts], coefficients[seconds], aspect[firsts] / aspect[seconds], windows_a,
                          windows_b, SAME_THRESHOLD)
        for first, second, score in zip(firsts.tolist(), seconds.tolist(), scores.tolist(), strict=True):
            ra, rb = root(first), root(second)
            if score <= SAME_THRESHOLD:
                parent[max(ra, rb)] = min(ra, rb)
            else:
                tried[(min(ra, rb), max(ra, rb))] = tried.get((min(ra, rb), max(ra, rb)), 0) + 1
        pending = waiting
    groups: dict[int, list[K]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), []).append(name)
    return [members for members in groups.values() if len(members) > 1]


def _candidates(coefficients: np.ndarray, chunk: int = 8192) -> list[tuple[int, int, int, int]]:
    """(picture, picture, its window, the other's window) for pairs of pictures where a probe of one hits a
    key of the other and the two windows' codes are at most _CODE_BITS_APART bits apart, once per pair
    (its closest windows), closest pairs first."""
    count = len(coefficients)
    parts = [_codes_and_probes(coefficients[i:i + chunk], _GROUP_FLIPS) for i in range(0, count, chunk)]
    codes = np.concatenate([part[0] for part in parts])
    probes = np.concatenate([part[1] for part in parts])
    keys = (codes >> np.uint64(64 - KEY_BITS)).reshape(-1).astype(np.int64)
    key_entry = np.argsort(keys, kind="stable")  # entry: picture * windows + window, by key
    keys = keys[key_entry]
    probe = probes.reshape(-1).astype(np.int64)
    probe_entry = np.repeat(np.arange(count * len(WINDOWS)), probes.shape[-1])
    # Most probes hit no key: a bitmap of the keys (16 MB) leaves those out before the binary search.
    present = np.zeros(1 << KEY_BITS, bool)
    present[keys] = True
    hit = present[probe]
    probe, probe_entry = probe[hit], probe_entry[hit]
    low = np.searchsorted(keys, probe, "left")
    hits = np.minimum(np.searchsorted(keys, probe, "right") - low, _MAX_BUCKET)
    probe_entry = np.repeat(probe_entry, hits)
    at = np.repeat(low - np.cumsum(hits) + hits, hits) + np.arange(hits.sum())
    other_entry = key_entry[at]
    first, second = probe_entry // len(WINDOWS), other_entry // len(WINDOWS)
    flat_codes = codes.reshape(-1)
    apart = _hamming(flat_codes[probe_entry], flat_codes[other_entry])
    keep = (first != second) & (apart <= _CODE_BITS_APART)
    swap = first > second
    a_entry = np.where(swap, other_entry, probe_entry)[keep]
    b_entry = np.where(swap, probe_entry, other_entry)[keep]
    apart = apart[keep]
    if not len(apart):  # no two pictures alike enough to compare
        return []
    # Per pair of pictures, its closest windows first, the same window on both sides first among equals.
    order = np.lexsort((a_entry % len(WINDOWS) != b_entry % len(WINDOWS), apart, b_entry // len(WINDOWS),
                        a_entry // len(WINDOWS)))
    a_entry, b_entry, apart = a_entry[order], b_entry[order], apart[order]
    a_picture, b_picture = a_entry // len(WINDOWS), b_entry // len(WINDOWS)
    once = np.r_[True, (a_picture[1:] != a_picture[:-1]) | (b_picture[1:] != b_picture[:-1])]
    a_entry, b_entry, apart = a_entry[once], b_entry[once], apart[once]
    order = np.argsort(apart, kind="stable")
    a_entry, b_entry = a_entry[order], b_entry[order]
    return list(zip((a_entry // len(WINDOWS)).tolist(), (b_entry // len(WINDOWS)).tolist(),
                    (a_entry % len(WINDOWS)).tolist(), (b_entry % len(WINDOWS)).tolist(), strict=True))

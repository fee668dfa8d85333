"""Read and decode candidate files ahead of the model, in threads, one batch at a time."""
from __future__ import annotations

import hashlib
import io
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

from PIL import Image

from findimage.dates import taken_of
from findimage.imaging import DRAFT_MIN_SIDE, FORMATS, ImageError, Prepared, prepare_bytes

from .scan import ArchiveFile


@dataclass
class Loaded:
    """A candidate file read from disk: its content hash and decoded picture, or why it failed."""

    file: ArchiveFile
    sha256: str = ""
    prepared: Prepared | None = None
    error: str | None = None
    taken: tuple[str, str] = ("", "")  # (ISO 8601, source): when the photo was taken, see findimage.dates


def read_and_decode(file: ArchiveFile, embedder=None, max_pixels: int | None = None) -> Loaded:
    """Read, hash and decode one file. With an embedder that offers it, the JPEG is drafted only down to
    the model's input side and downsized to it here, in the decode thread, as its processor would."""
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        return Loaded(file, error=f"cannot read: {exc.strerror}")
    loaded = Loaded(file, hashlib.sha256(data).hexdigest())
    shrink = getattr(embedder, "shrink", None)
    try:
        side = embedder.image_input_side() if shrink else None
        loaded.prepared = prepare_bytes(data, side or DRAFT_MIN_SIDE, max_pixels=max_pixels)
        if shrink:
            loaded.prepared.image = shrink(loaded.prepared.image)
    except ImageError as exc:
        loaded.error = str(exc)
        return loaded
    loaded.taken = taken_of(_header(data), file.mtime)
    return loaded


def _header(data: bytes) -> Image.Image | None:
    """The file opened again for its EXIF only (the decoded picture above has had its orientation
    applied, which rewrites EXIF); opening reads the header, no pixels."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Exception:  # noqa: BLE001 - it decoded above; a header that fails now just means no EXIF date
        return None
    return image


def prefetched(pool: ThreadPoolExecutor, files: list[ArchiveFile], lookahead: int, decode) -> Iterator[Loaded]:
    """Read and decode ahead in threads while the caller runs the model on earlier files."""
    pending: deque = deque()
    remaining = iter(files)
    for file in remaining:
        pending.append(pool.submit(decode, file))
        if len(pending) >= lookahead:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(remaining, None)
        if nxt is not None:
            pending.append(pool.submit(decode, nxt))


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

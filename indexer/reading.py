"""Read and decode candidate files ahead of the model, in threads, one batch at a time; each picture's
fingerprint (findimage.fingerprint) made from what was decoded for the model, and for files indexed
before fingerprints were kept, from a small decode of its own (no model)."""
from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from PIL import Image

from findimage.archive_files import ArchiveFileRefused, Indexed, open_archive_file, read_archive_file
from findimage.config import DecodeLimits
from findimage.dates import taken_of, taken_of_header
from findimage.duplicates import picture_fingerprint
from findimage.fingerprint import fingerprint
from findimage.imaging import DRAFT_MIN_SIDE, ImageError, Prepared, prepare_bytes
from findimage.models.base import ImageEmbedder
from findimage.models.text_reader import probe_copy

from .scan import ArchiveFile


@dataclass
class Loaded:
    """A candidate file read from disk: its content hash and decoded picture, or why it failed."""

    file: ArchiveFile
    sha256: str = ""
    prepared: Prepared | None = None
    error: str | None = None
    taken: tuple[str, str] = ("", "")  # (ISO 8601, source): when the photo was taken, see findimage.dates
    # Where its text is to be read along: the pixels decoded for the embedding at the text probe's size
    # (findimage.models.text_reader.probe_copy), so that reading a photo without text decodes nothing again.
    copy: Image.Image | None = None
    fingerprint: str = ""  # findimage.fingerprint's string of the decoded picture

    @property
    def picture(self) -> Prepared:
        """The decoded picture of a file read without error."""
        if self.prepared is None:
            raise ValueError(f"{self.file.relative_path} was not decoded: {self.error}")
        return self.prepared


def read_and_decode(file: ArchiveFile, embedder: ImageEmbedder | None = None,
                    limits: DecodeLimits | None = None, keep_copy: bool = False) -> Loaded:
    """Read, hash and decode one file within `limits` (None: as the settings declare them by default). With
    an embedder, the JPEG is drafted only down to the model's input side and downsized to it here, in the
    decode thread, as its processor would; with `keep_copy`, a small copy of the decoded pixels is kept for
    the text probe (Loaded.copy).

    The file is read as the scan saw it (archive_files): a link, FIFO or device swapped in since, or a
    file changed since, is refused instead of followed, waited on or read without end."""
    limits = limits or DecodeLimits.declared()
    try:
        data = read_archive_file(archive_root(file), file.relative_path, limits.budget,
                                 Indexed(file.size, file.mtime))
    except ArchiveFileRefused as exc:
        return Loaded(file, error=f"cannot read: {exc}")
    loaded = Loaded(file, hashlib.sha256(data).hexdigest())
    try:
        side = embedder.image_input_side() if embedder is not None else None
        loaded.prepared = prepare_bytes(data, side or DRAFT_MIN_SIDE, max_pixels=limits.max_pixels,
                                        budget=limits.budget)
        decoded = loaded.prepared.image
        if keep_copy:
            loaded.copy = probe_copy(decoded)
        if embedder is not None:
            loaded.prepared.image = embedder.shrink(decoded)
    except ImageError as exc:
        loaded.error = str(exc)
        return loaded
    loaded.taken = taken_of(loaded.prepared.exif, file.mtime)
    # From the decode made for the model (the fingerprint reads a picture at 64 x 64): no second decode.
    loaded.fingerprint = picture_fingerprint(decoded, loaded.prepared.image).to_string()
    return loaded


FINGERPRINT_SIDE = 224  # a file fingerprinted on its own is decoded (drafted) down to this, as for CLIP


def fingerprint_file(file: ArchiveFile, limits: DecodeLimits) -> tuple[str, str] | None:
    """(sha256, fingerprint string) of an indexed file whose document has no fingerprint yet, decoded once at
    a small size (no model); None where it cannot be read or decoded now (it stays without one: the
    embedding pass reports such files)."""
    try:
        data = read_archive_file(archive_root(file), file.relative_path, limits.budget,
                                 Indexed(file.size, file.mtime))
        prepared = prepare_bytes(data, FINGERPRINT_SIDE, max_pixels=limits.max_pixels, budget=limits.budget)
    except (ArchiveFileRefused, ImageError):
        return None
    return hashlib.sha256(data).hexdigest(), fingerprint(prepared.image).to_string()


def archive_root(file: ArchiveFile) -> Path:
    """The archive folder the scan found `file` in (its path is always root / relative_path)."""
    return file.path.parents[len(PurePosixPath(file.relative_path).parts) - 1]


def taken_from_header(file: ArchiveFile) -> tuple[str, str]:
    """When an unchanged, already indexed file was taken, from its header only (the upgrade pass)."""
    try:
        with open_archive_file(archive_root(file), file.relative_path, Indexed(file.size, file.mtime)) as stream:
            return taken_of_header(stream, file.mtime)
    except ArchiveFileRefused:
        return taken_of(None, file.mtime)


def prefetched(pool: ThreadPoolExecutor, files: list[ArchiveFile], lookahead: int,
               decode: Callable[[ArchiveFile], Loaded]) -> Iterator[Loaded]:
    """Read and decode ahead in threads while the caller runs the model on earlier files."""
    pending: deque[Future[Loaded]] = deque()
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


T = TypeVar("T")


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

"""Find the image files of the archive, as the indexer should see them."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from findimage.archive_files import archive_root_problem
from findimage.errors import EXIT_REFUSED, FindimageError
from findimage.imaging import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


class ArchiveUnavailable(FindimageError):
    """The archive root cannot be used as it is (missing, not a folder, unreadable): nothing may change."""

    exit_code = EXIT_REFUSED


ARCHIVE_HINT = "Is the archive mounted, and is FINDIMAGE_ARCHIVE right?"


@dataclass(frozen=True)
class ArchiveFile:
    relative_path: str  # always with '/' separators
    path: Path
    size: int
    mtime: float


@dataclass
class Scan:
    """What the archive holds, and where the indexer could not look (those documents must be kept)."""

    files: dict[str, ArchiveFile] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)  # relative folders ('a/b/') or files that failed
    finished: bool = True  # False: listing stopped at its time limit (scan_archive's `until`)

    def hides(self, relative_path: str) -> bool:
        """True if the path lies where the scan could not see, so its absence proves nothing."""
        return any(relative_path == u or (u.endswith("/") and relative_path.startswith(u)) for u in self.unlisted)


def check_archive_root(root: str | Path) -> Path:
    """The archive root if it can be listed; ArchiveUnavailable with what to check otherwise."""
    problem = archive_root_problem(root)
    if problem:
        raise ArchiveUnavailable(f"{problem}; nothing was changed. {ARCHIVE_HINT}")
    return Path(root)


def scan_archive(root: str | Path, until: float | None = None) -> Scan:
    """Image files under `root` by relative path; hidden entries and links leaving the archive are skipped.

    A folder (or file) that cannot be listed or read is recorded in `unlisted`, not treated as empty:
    a stale network mount or a permission change must not look like deleted photos.

    `until` (a time.monotonic() value) stops the listing there, leaving `finished` False: `findimage
    doctor` counts a huge archive for a bounded time; a pass always lists it all.
    """
    root = check_archive_root(root)
    real_root = os.path.realpath(root)
    scan = Scan()
    visited_dirs = {real_root}
    stack = [(root, "")]
    while stack:
        if until is not None and time.monotonic() >= until:
            scan.finished = False
            break
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            log.warning("cannot list %s (%s): keeping its documents", folder, exc.strerror)
            scan.unlisted.append(prefix)
            continue
        for entry in entries:
            relative = prefix + entry.name
            try:
                if _passed_over(entry.name, entry.path, entry.is_symlink, real_root):
                    continue
                if entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if real not in visited_dirs:  # a link back up would loop forever
                        visited_dirs.add(real)
                        stack.append((Path(entry.path), relative + "/"))
                elif _image_name(entry.name) and entry.is_file():
                    stat = entry.stat()
                    scan.files[relative] = ArchiveFile(relative, Path(entry.path), stat.st_size, stat.st_mtime)
            except OSError as exc:
                log.warning("cannot read %s (%s): keeping its document", entry.path, exc.strerror)
                scan.unlisted.extend([relative, relative + "/"])
    return scan


def not_listed(root: str | Path, relative_path: str) -> str | None:
    """Why the scan would not list `relative_path` as an image of the archive at `root` (None: it would),
    by the scan's own rules: for a path from elsewhere (a bucket taken from the queue), which may name a
    hidden file, `..`, an absolute path or a link leading out of the archive."""
    names = relative_path.split("/")
    if not relative_path or any(name in ("", ".", "..") or "\0" in name for name in names):
        return "not a path inside the archive"
    real_root = os.path.realpath(root)
    path = str(root)
    try:
        for name in names:
            path = os.path.join(path, name)
            reason = _passed_over(name, path, partial(os.path.islink, path), real_root)
            if reason:
                return reason
        if not _image_name(names[-1]):
            return "not a supported image file"
        if not os.path.isfile(path):
            return "not a file in the archive"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


def _passed_over(name: str, path: str, is_link: Callable[[], bool], real_root: str) -> str | None:
    """Why the scan does not look at this folder entry (None: it does): the one rule for what the archive
    holds, for the scan and for paths checked without one (`not_listed`)."""
    if name.startswith("."):
        return "a hidden file or folder"
    if is_link() and not _inside(os.path.realpath(path), real_root):
        return "a link leading out of the archive"
    return None


def _image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)

"""Find the image files of the archive, as the indexer should see them."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from findimage.errors import EXIT_REFUSED, FindimageError
from findimage.imaging import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


class ArchiveUnavailable(FindimageError):
    """The archive root cannot be used as it is (missing, not a folder, unreadable): nothing may change."""

    exit_code = EXIT_REFUSED


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

    def hides(self, relative_path: str) -> bool:
        """True if the path lies where the scan could not see, so its absence proves nothing."""
        return any(relative_path == u or (u.endswith("/") and relative_path.startswith(u)) for u in self.unlisted)


def check_archive_root(root: str | Path) -> Path:
    """The archive root if it can be listed; ArchiveUnavailable with what to check otherwise."""
    root = Path(root)
    hint = "Is the archive mounted, and is FINDIMAGE_ARCHIVE right?"
    if not root.exists():
        raise ArchiveUnavailable(f"The archive folder {root} does not exist; nothing was changed. {hint}")
    if not root.is_dir():
        raise ArchiveUnavailable(f"The archive path {root} is not a folder; nothing was changed. {hint}")
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        raise ArchiveUnavailable(f"The archive folder {root} cannot be read ({exc.strerror}); nothing was "
                                 f"changed. {hint}") from None
    return root


def scan_archive(root: str | Path) -> Scan:
    """Image files under `root` by relative path; hidden entries and links leaving the archive are skipped.

    A folder (or file) that cannot be listed or read is recorded in `unlisted`, not treated as empty:
    a stale network mount or a permission change must not look like deleted photos.
    """
    root = check_archive_root(root)
    real_root = os.path.realpath(root)
    scan = Scan()
    visited_dirs = {real_root}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            log.warning("cannot list %s (%s): keeping its documents", folder, exc.strerror)
            scan.unlisted.append(prefix)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
                    continue
                if entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if real not in visited_dirs:  # a link back up would loop forever
                        visited_dirs.add(real)
                        stack.append((Path(entry.path), relative + "/"))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                    stat = entry.stat()
                    scan.files[relative] = ArchiveFile(relative, Path(entry.path), stat.st_size, stat.st_mtime)
            except OSError as exc:
                log.warning("cannot read %s (%s): keeping its document", entry.path, exc.strerror)
                scan.unlisted.extend([relative, relative + "/"])
    return scan


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)

"""Find the image files of the archive, as the indexer should see them."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from findimage.imaging import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveFile:
    relative_path: str  # always with '/' separators
    path: Path
    size: int
    mtime: float


def scan_archive(root: str | Path) -> dict[str, ArchiveFile]:
    """Image files under `root` by relative path; hidden entries and links leaving the archive are skipped."""
    root = Path(root)
    real_root = os.path.realpath(root)
    found: dict[str, ArchiveFile] = {}
    visited_dirs = {real_root}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
                continue
            try:
                if entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if real not in visited_dirs:  # a link back up would loop forever
                        visited_dirs.add(real)
                        stack.append((Path(entry.path), relative + "/"))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                    stat = entry.stat()
                    found[relative] = ArchiveFile(relative, Path(entry.path), stat.st_size, stat.st_mtime)
            except OSError as exc:
                log.warning("cannot read %s: %s", entry.path, exc.strerror)
    return found


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)

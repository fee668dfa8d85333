"""The one way to open an archive file: inside the archive, a regular file, bounded, and the one indexed;
and a file someone names outside it (an example image), bounded the same way.

Every reader of archive files (the indexer, uploads of matches, the answer filter, the image-link
server) opens them here, because a path is only a name: between the scan that listed it and the read,
a folder can be swapped for a symlink to pictures outside the archive, or a file for a FIFO (which
blocks a plain open forever) or `/dev/zero` (which never ends). So a file is opened by walking its
resolved path one component at a time from the archive root's descriptor with O_NOFOLLOW (a link
swapped in after resolving fails the open instead of being followed), with O_NONBLOCK (a FIFO opens at
once instead of waiting for a writer), then checked on the open descriptor (fstat): a regular file,
not larger than the caller allows, and, when the caller knows it, of the size and modification time
that were indexed. Bytes are read from that descriptor only.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
READ_CHUNK = 1 << 20


class ArchiveFileRefused(Exception):
    """The file cannot be read as the indexed archive file; the message says why, for logs and summaries."""


@dataclass(frozen=True)
class Indexed:
    """What the index recorded about a file: reading another file under the same name is refused."""

    size: int
    mtime: float


def archive_root_problem(root: str | Path) -> str | None:
    """Why the archive root cannot be listed (missing, not a folder, unreadable: an unmounted share),
    as the start of a sentence naming it; None when it can. The indexer refuses a pass on it
    (indexer.scan), and a process that needs the archive is not ready (findimage.observability)."""
    root = Path(root)
    if not root.exists():
        return f"The archive folder {root} does not exist"
    if not root.is_dir():
        return f"The archive path {root} is not a folder"
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        return f"The archive folder {root} cannot be read ({exc.strerror})"
    return None


def read_archive_file(root: str | Path, relative_path: str, max_bytes: int, expect: Indexed | None = None) -> bytes:
    """The bytes of `relative_path` under `root`; ArchiveFileRefused if it leaves the archive, is not a
    regular file, is larger than `max_bytes`, differs from `expect` or changes while it is read."""
    fd = _open(root, relative_path)
    try:
        size = _check(fd, max_bytes, expect)
        return _read(fd, size)
    finally:
        os.close(fd)


@contextmanager
def open_archive_file(root: str | Path, relative_path: str, expect: Indexed | None = None) -> Iterator[BinaryIO]:
    """The checked file, open for reading its header (date reading); ArchiveFileRefused as above."""
    fd = _open(root, relative_path)
    try:
        _check(fd, None, expect)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        yield file


def read_named_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a file whoever runs a command names (the command line's `--image`): a regular file (a
    FIFO opens at once and is refused), at most `max_bytes`, as it was when opened; ArchiveFileRefused
    otherwise."""
    try:
        fd = os.open(path, _FILE_FLAGS & ~os.O_NOFOLLOW)  # a link the person named is theirs to follow
    except OSError as exc:
        raise ArchiveFileRefused(f"cannot be opened ({exc.strerror})") from None
    try:
        return _read(fd, _check(fd, max_bytes, None))
    finally:
        os.close(fd)


def is_servable(root: str | Path, relative_path: str, expect: Indexed | None = None) -> bool:
    """Whether `relative_path` would be read by read_archive_file (size aside): for filtering answers."""
    try:
        fd = _open(root, relative_path)
    except ArchiveFileRefused:
        return False
    try:
        _check(fd, None, expect)
        return True
    except ArchiveFileRefused:
        return False
    finally:
        os.close(fd)


def _open(root: str | Path, relative_path: str) -> int:
    real_root = os.path.realpath(root)
    parts = PurePosixPath(relative_path.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ArchiveFileRefused("not a path inside the archive")
    # Links that stay inside the archive are followed (the scan follows them too), once, here: the
    # walk below then refuses any link, so nothing swapped in after this line is ever followed.
    real = os.path.realpath(os.path.join(real_root, *parts))
    inside = os.path.relpath(real, real_root)
    if inside == "." or inside == ".." or inside.startswith(".." + os.sep) or os.path.isabs(inside):
        raise ArchiveFileRefused("resolves outside the archive")
    names = inside.split(os.sep)
    try:
        dir_fd = os.open(real_root, _DIR_FLAGS)
    except OSError as exc:
        raise ArchiveFileRefused(f"the archive cannot be opened ({exc.strerror})") from None
    try:
        for name in names[:-1]:
            next_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(names[-1], _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ArchiveFileRefused("file not found") from None
    except PermissionError:
        raise ArchiveFileRefused("permission denied") from None
    except OSError as exc:  # ELOOP / ENOTDIR: a link or a file swapped in after resolving
        raise ArchiveFileRefused(f"changed to a link or another kind of file ({exc.strerror})") from None
    finally:
        os.close(dir_fd)


def _check(fd: int, max_bytes: int | None, expect: Indexed | None) -> int:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise ArchiveFileRefused("is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ArchiveFileRefused("not a regular file (a FIFO, device or socket)")
    if expect is not None and (info.st_size != expect.size or info.st_mtime != expect.mtime):
        raise ArchiveFileRefused("changed since it was listed (size or modification time)")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ArchiveFileRefused(f"file too large ({info.st_size / 2**20:,.0f} MB; at most "
                                 f"{max_bytes / 2**20:,.0f} MB)")
    return info.st_size


def _read(fd: int, size: int) -> bytes:
    """Exactly `size` bytes: a file that grows or shrinks while it is read is refused, not half-read."""
    chunks, left = [], size + 1
    while left > 0:
        chunk = os.read(fd, min(READ_CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) != size:
        raise ArchiveFileRefused("changed while it was read")
    return data

"""Paths are only names: a folder swapped for a link to pictures outside the archive, a file swapped for
a FIFO or /dev/zero, or a file changed after the scan is never read, uploaded, linked or embedded."""
from __future__ import annotations

import os
import shutil

import pytest
from hostile_images import red_pictures_at
from photos import save_photo

from findimage.archive_files import ArchiveFileRefused, Indexed, is_servable, read_archive_file

MB = 2**20




def test_every_reader_refuses_what_the_scan_would_not_have_listed(tmp_path):
    root = tmp_path / "archive"
    photo = save_photo(root / "a" / "photo.jpg", seed=1)
    indexed = Indexed(photo.stat().st_size, photo.stat().st_mtime)
    assert read_archive_file(root, "a/photo.jpg", 50 * MB, indexed) == photo.read_bytes()

    os.mkfifo(root / "a" / "fifo.jpg")
    (root / "a" / "zero.jpg").symlink_to("/dev/zero")
    (root / "a" / "inner-link.jpg").symlink_to(root / "a" / "photo.jpg")  # a link within the archive is followed
    refusals = {}
    for name in ("fifo.jpg", "zero.jpg", "missing.jpg", "../../etc/passwd"):
        with pytest.raises(ArchiveFileRefused) as refused:
            read_archive_file(root, f"a/{name}", 50 * MB)
        refusals[name] = str(refused.value)
    assert refusals == {"fifo.jpg": "not a regular file (a FIFO, device or socket)",
                        "zero.jpg": "resolves outside the archive", "missing.jpg": "file not found",
                        "../../etc/passwd": "not a path inside the archive"}
    assert read_archive_file(root, "a/inner-link.jpg", 50 * MB) == photo.read_bytes()
    with pytest.raises(ArchiveFileRefused, match="file too large"):
        read_archive_file(root, "a/photo.jpg", 1000)
    os.utime(photo, (0, 0))
    assert not is_servable(root, "a/photo.jpg", indexed), "changed since indexing: not the file that matched"


def test_a_link_swapped_in_after_the_path_was_resolved_is_not_followed(tmp_path, monkeypatch):
    """The race itself: the folder becomes a link between resolving the path and opening it."""
    root = tmp_path / "archive"
    save_photo(root / "a" / "photo.jpg", seed=1)
    red_pictures_at(tmp_path / "elsewhere", ["photo.jpg"])
    real_realpath = os.path.realpath

    def resolve_then_swap(path, *args, **kwargs):
        resolved = real_realpath(path, *args, **kwargs)
        if str(path).endswith("photo.jpg") and not (root / "a").is_symlink():
            shutil.rmtree(root / "a")
            (root / "a").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        return resolved

    monkeypatch.setattr(os.path, "realpath", resolve_then_swap)
    with pytest.raises(ArchiveFileRefused, match="changed to a link"):
        read_archive_file(root, "a/photo.jpg", 50 * MB)

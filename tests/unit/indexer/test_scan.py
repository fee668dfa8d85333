"""The archive scan (indexer.scan) on its own: which files the indexer sees, and where it could not look.

Fast unit tests on small folders of placeholder files (the scan reads names and stats, never pixels);
whole passes over real photos are tested in test_indexer and test_indexer_safety.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import indexer.scan as scan_module
from indexer.scan import (
    ArchiveFile,
    ArchiveUnavailable,
    Scan,
    _inside,
    check_archive_root,
    not_listed,
    scan_archive,
)


def write(path: Path, data: bytes = b"x", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


_real_scandir = os.scandir


class NameOrder:
    """os.scandir in name order (hidden names and '_' first), so a test can put a skipped entry before others."""

    def __init__(self, path):
        self._listing = _real_scandir(path)

    def __enter__(self):
        return iter(sorted(self._listing, key=lambda e: e.name))

    def __exit__(self, *exc):
        self._listing.close()


def test_every_image_file_is_listed_by_relative_path_with_its_size_and_mtime(tmp_path):
    root = tmp_path / "archive"
    write(root / "top.jpg", b"a" * 10, 1_600_000_000.5)
    write(root / "events" / "2024" / "stage.JPEG", b"b" * 20, 1_700_000_000.25)
    for ext in (".png", ".webp", ".gif", ".bmp", ".tif", ".TIFF", ".Jpg"):
        write(root / "kinds" / f"x{ext}", b"c" * 3, 1_650_000_000)

    scan = scan_archive(root)

    assert scan.files["top.jpg"] == ArchiveFile("top.jpg", root / "top.jpg", 10, 1_600_000_000.5)
    assert scan.files["events/2024/stage.JPEG"] == ArchiveFile(
        "events/2024/stage.JPEG", root / "events" / "2024" / "stage.JPEG", 20, 1_700_000_000.25)
    assert sorted(scan.files) == sorted(["top.jpg", "events/2024/stage.JPEG"] + [
        f"kinds/x{ext}" for ext in (".png", ".webp", ".gif", ".bmp", ".tif", ".TIFF", ".Jpg")])
    assert scan.unlisted == []


def test_other_files_hidden_entries_and_folders_named_like_images_are_left_out(tmp_path, monkeypatch):
    root = tmp_path / "archive"
    monkeypatch.setattr(scan_module.os, "scandir", NameOrder)
    write(root / "keep.png")
    write(root / "notes.txt")
    write(root / "raw.cr2")
    write(root / "noextension")
    write(root / "jpg")
    write(root / ".hidden.jpg")
    write(root / ".cache" / "thumb.jpg")
    write(root / "album.jpg" / "inside.png")  # a folder whose name ends in .jpg is a folder

    assert sorted(scan_archive(root).files) == ["album.jpg/inside.png", "keep.png"]


def test_links_inside_the_archive_are_followed_once_and_links_leaving_it_are_not(tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module.os, "scandir", NameOrder)  # "escape" is skipped before "real" is seen
    root = tmp_path / "archive"
    outside = tmp_path / "private"
    write(outside / "secret.jpg")
    write(root / "real" / "a.jpg")
    write(root / "zz.jpg")  # listed after the links that are skipped
    (root / "alias").symlink_to(root / "real")  # a second name for a folder inside
    (root / "real" / "loop").symlink_to(root)  # a link back up
    (root / "escape").symlink_to(outside)
    (root / "secret.jpg").symlink_to(outside / "secret.jpg")
    (root / "b.jpg").symlink_to(root / "real" / "a.jpg")
    (root / "dangling.jpg").symlink_to(root / "nothing.jpg")
    # a sibling whose name starts like the archive's is still outside it
    write(tmp_path / "archive-other" / "c.jpg")
    (root / "sibling").symlink_to(tmp_path / "archive-other")

    files = scan_archive(root).files

    assert len([p for p in files if p.endswith("/a.jpg")]) == 1, sorted(files)  # the folder is listed once
    assert not any("secret" in p or "c.jpg" in p or "dangling" in p for p in files), sorted(files)
    assert sorted(files) in (["b.jpg", "real/a.jpg", "zz.jpg"], ["alias/a.jpg", "b.jpg", "zz.jpg"])


def test_a_path_from_elsewhere_is_held_to_the_scans_rules(tmp_path):
    """A bucket from the queue names its files itself: each must be one the scan lists."""
    root = tmp_path / "archive"
    outside = tmp_path / "private"
    write(outside / "secret.jpg")
    write(tmp_path / "archive-other" / "c.jpg")
    for path in ("real/a.jpg", "top.PNG", ".hidden.jpg", ".cache/thumb.jpg", "real/.hidden/deep.jpg", "notes.txt",
                 "album.jpg/inside.png"):
        write(root / path)
    (root / "alias").symlink_to(root / "real")
    (root / "escape").symlink_to(outside)
    (root / "secret.jpg").symlink_to(outside / "secret.jpg")
    (root / "sibling").symlink_to(tmp_path / "archive-other")
    (root / "dangling.jpg").symlink_to(root / "nothing.jpg")

    listed = set(scan_archive(root).files)
    assert listed - {"real/a.jpg", "alias/a.jpg"} == {"top.PNG", "album.jpg/inside.png"} and len(listed) == 3
    for path in (*listed, "real/a.jpg", "alias/a.jpg"):  # a link that stays inside is followed, as the scan does
        assert not_listed(root, path) is None, path
    refused = {
        ".hidden.jpg": "a hidden file or folder", ".cache/thumb.jpg": "a hidden file or folder",
        "real/.hidden/deep.jpg": "a hidden file or folder",
        "escape/secret.jpg": "a link leading out of the archive", "secret.jpg": "a link leading out of the archive",
        "sibling/c.jpg": "a link leading out of the archive",
        "../private/secret.jpg": "not a path inside the archive", "real/../../private/secret.jpg":
            "not a path inside the archive", str(outside / "secret.jpg"): "not a path inside the archive",
        "./top.PNG": "not a path inside the archive", "real//a.jpg": "not a path inside the archive",
        "": "not a path inside the archive", "top.PNG\0.jpg": "not a path inside the archive",
        "notes.txt": "not a supported image file", "album.jpg": "not a file in the archive",
        "missing.jpg": "not a file in the archive", "dangling.jpg": "not a file in the archive",
    }
    for path, reason in refused.items():
        assert not_listed(root, path) == reason, path
        assert path not in listed


def test_a_root_that_is_missing_a_file_or_unreadable_is_refused_with_what_to_check(tmp_path, monkeypatch):
    with pytest.raises(ArchiveUnavailable, match=r"does not exist; nothing was changed\. Is the archive mounted"):
        check_archive_root(tmp_path / "missing")
    with pytest.raises(ArchiveUnavailable, match="is not a folder"):
        scan_archive(write(tmp_path / "file.jpg"))

    real_scandir = os.scandir

    def refusing(path):
        if Path(path) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", refusing)
    with pytest.raises(ArchiveUnavailable, match=r"cannot be read \(Permission denied\); nothing was changed"):
        check_archive_root(tmp_path)


def test_an_empty_root_is_a_valid_empty_archive(tmp_path):
    assert check_archive_root(str(tmp_path)) == tmp_path
    assert scan_archive(tmp_path) == Scan()


def test_a_folder_that_cannot_be_listed_is_recorded_not_treated_as_empty(tmp_path, monkeypatch, caplog):
    root = tmp_path / "archive"
    write(root / "ok" / "a.jpg")
    write(root / "mount" / "deep" / "b.jpg")
    real_scandir = os.scandir

    def stale_mount(path):
        if Path(path) == root / "mount":
            raise OSError(116, "Stale file handle")
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", stale_mount)
    with caplog.at_level(logging.WARNING, logger="indexer.scan"):
        scan = scan_archive(root)

    assert sorted(scan.files) == ["ok/a.jpg"] and scan.unlisted == ["mount/"]
    assert scan.hides("mount/deep/b.jpg") and not scan.hides("ok/a.jpg") and not scan.hides("mountain.jpg")
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot list {root / 'mount'} (Stale file handle): keeping its documents"]


def test_a_file_that_cannot_be_read_is_recorded_as_a_file_and_as_a_folder(tmp_path, monkeypatch, caplog):
    root = tmp_path / "archive"
    write(root / "ok.jpg")
    write(root / "sub" / "bad.jpg")
    real_scandir = os.scandir

    class BadEntry:
        def __init__(self, entry):
            self._entry, self.name, self.path = entry, entry.name, entry.path

        def is_symlink(self):
            raise OSError(5, "Input/output error")

    class Listing:
        def __init__(self, path):
            self._listing = real_scandir(path)

        def __enter__(self):
            return iter([BadEntry(e) if e.name == "bad.jpg" else e for e in self._listing])

        def __exit__(self, *exc):
            self._listing.close()

    monkeypatch.setattr(scan_module.os, "scandir", Listing)
    with caplog.at_level(logging.WARNING, logger="indexer.scan"):
        scan = scan_archive(root)

    assert sorted(scan.files) == ["ok.jpg"] and scan.unlisted == ["sub/bad.jpg", "sub/bad.jpg/"]
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read {root / 'sub' / 'bad.jpg'} (Input/output error): keeping its document"]


def test_hides_covers_the_unlisted_files_and_everything_under_unlisted_folders():
    scan = Scan(unlisted=["a/b.jpg", "c/"])

    assert scan.hides("a/b.jpg") and scan.hides("c/x.jpg") and scan.hides("c/d/e.jpg")
    assert not scan.hides("a/b.jpg.png") and not scan.hides("a/b.jp") and not scan.hides("cd/x.jpg")
    assert not scan.hides("c") and not Scan().hides("anything.jpg")
    # a file path in unlisted is not a folder: nothing "under" it is hidden
    assert not Scan(unlisted=["a"]).hides("ab.jpg") and not Scan(unlisted=["a"]).hides("a/x.jpg")


def test_inside_means_the_root_itself_or_below_it():
    assert _inside("/srv/archive", "/srv/archive") and _inside("/srv/archive/x", "/srv/archive")
    assert _inside("/srv/archive/x", "/srv/archive/")
    assert not _inside("/srv/archive2/x", "/srv/archive") and not _inside("/srv", "/srv/archive")


def test_a_listing_given_a_deadline_stops_there_and_says_it_did_not_finish(tmp_path):
    write(tmp_path / "a.jpg")
    assert scan_archive(tmp_path).finished
    stopped = scan_archive(tmp_path, until=0.0)  # already past: nothing listed
    assert not stopped.finished and stopped.files == {}

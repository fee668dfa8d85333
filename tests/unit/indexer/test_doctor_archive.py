"""`findimage doctor`'s archive line: counted by the indexer's own listing, bounded in time, and naming
(escaped) the folders that listing could not read."""
from __future__ import annotations

import os
from pathlib import Path

import indexer.scan as scan_module
from findimage.config import load_settings
from indexer.doctor import archive_check


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def settings_for(root: Path):
    return load_settings({"FINDIMAGE_ARCHIVE": str(root)}, env_file=None)


def test_the_archive_is_counted_as_a_pass_lists_it(tmp_path):
    for name in ("a.jpg", "b/c.PNG", "b/notes.txt", ".hidden/d.jpg"):
        write(tmp_path / name)
    check = archive_check(settings_for(tmp_path))
    assert (check.status, check.detail) == ("ok", f"{tmp_path}: 2 images")


def test_folders_the_listing_cannot_read_are_named_escaped(tmp_path, monkeypatch):
    write(tmp_path / "ok.jpg")
    for name in ("locked\nnewline", "stale"):
        write(tmp_path / name / "x.jpg")
    real_scandir = os.scandir

    def refusing(path):
        if Path(path).parent == tmp_path and Path(path) != tmp_path:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", refusing)
    check = archive_check(settings_for(tmp_path))
    assert check.status == "warn" and "\n" not in check.detail
    assert f"{tmp_path}: 1 images; 2 folder(s) or file(s) could not be read (" in check.detail
    assert "locked\\nnewline/" in check.detail and "stale/" in check.detail


def test_a_huge_archive_is_counted_for_a_bounded_time(tmp_path):
    write(tmp_path / "a.jpg")
    check = archive_check(settings_for(tmp_path), seconds=0)
    assert check.status == "ok"
    assert check.detail == f"{tmp_path}: at least 0 images (counted for 0 s; `findimage index` lists them all)"


def test_a_missing_archive_fails_naming_the_setting(tmp_path):
    check = archive_check(settings_for(tmp_path / "gone"))
    assert check.status == "fail"
    assert check.detail == (f"The archive folder {tmp_path / 'gone'} does not exist. Is the archive mounted, and is "
                            "FINDIMAGE_ARCHIVE right?")

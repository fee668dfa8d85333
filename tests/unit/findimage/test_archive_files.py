"""Paths are only names: a folder swapped for a link to pictures outside the archive, a file swapped for
a FIFO or /dev/zero, or a file changed after the scan is never read, uploaded, linked or embedded."""
from __future__ import annotations

import os
import shutil
import threading

import pytest
from PIL import Image

import indexer.index_pass
from bot_support import CHANNEL, bot, bot_settings, emu, indexed  # noqa: F401
from findimage.archive_files import ArchiveFileRefused, Indexed, is_servable, read_archive_file
from indexer.run import index_once
from photos import save_photo

MB = 2**20


def red_pictures_at(folder, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (320, 240), (255, 0, 0)).save(folder / name)


def is_red(jpeg: bytes) -> bool:
    import io
    r, g, b = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((1, 1)).getpixel((0, 0))
    return r > 200 and g < 60 and b < 60


def test_a_folder_swapped_for_a_link_to_same_named_pictures_outside_is_never_uploaded(bot, indexed, emu, tmp_path):
    nature = indexed.archive / "nature"
    names = sorted(p.name for p in nature.iterdir())
    outside = tmp_path / "elsewhere"
    red_pictures_at(outside, names)
    shutil.rmtree(nature)
    nature.symlink_to(outside, target_is_directory=True)

    emu.send_slash_command(bot.events_url, text="k=10 mountain", channel_id=CHANNEL)
    answer = emu.wait_for_upload(CHANNEL, timeout=15)

    assert answer.files, "the rest of the archive is still answered"
    assert not any(f.file.get("alt_txt", "").startswith("nature/") or "nature/" in f.title for f in answer.files)
    assert not any(is_red(content) for content in answer.contents), "nothing from outside was uploaded"
    assert "nature/" not in answer.initial_comment


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


def test_files_swapped_for_a_fifo_or_dev_zero_after_the_scan_do_not_hang_or_exhaust_the_pass(settings, monkeypatch):
    for i in range(3):
        save_photo(settings.archive / f"photo-{i}.jpg", seed=i)
    real_scan = indexer.index_pass.scan_archive

    def scan_then_swap(root):
        scan = real_scan(root)
        (settings.archive / "photo-1.jpg").unlink()
        os.mkfifo(settings.archive / "photo-1.jpg")
        (settings.archive / "photo-2.jpg").unlink()
        (settings.archive / "photo-2.jpg").symlink_to("/dev/zero")
        return scan

    monkeypatch.setattr(indexer.index_pass, "scan_archive", scan_then_swap)
    done = {}
    worker = threading.Thread(target=lambda: done.update(summary=index_once(settings, progress=False)), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the pass finished instead of waiting on the FIFO"
    summary = done["summary"]
    assert summary.added == 1
    assert dict(summary.failures) == {"photo-1.jpg": "cannot read: not a regular file (a FIFO, device or socket)",
                                      "photo-2.jpg": "cannot read: resolves outside the archive"}


def test_a_file_changed_between_scan_and_read_is_not_indexed_under_its_old_size(settings, monkeypatch):
    photo = save_photo(settings.archive / "photo.jpg", seed=1)
    real_scan = indexer.index_pass.scan_archive

    def scan_then_change(root):
        scan = real_scan(root)
        save_photo(photo, seed=2, size=(300, 200))
        return scan

    monkeypatch.setattr(indexer.index_pass, "scan_archive", scan_then_change)
    first = index_once(settings, progress=False)
    monkeypatch.setattr(indexer.index_pass, "scan_archive", real_scan)
    second = index_once(settings, progress=False)

    assert dict(first.failures) == {"photo.jpg": "cannot read: changed since it was listed (size or modification time)"}
    assert second.added == 1 and second.failures == [], "retried on the next pass, as it is now"

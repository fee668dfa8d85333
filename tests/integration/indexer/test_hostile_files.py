"""Hostile archive files meet an indexing pass: decode bombs, and files swapped for a FIFO, /dev/zero or
another picture between the scan and the read."""
from __future__ import annotations

import os
import threading

from hostile_images import claims_progressive_jpeg, tiled_tiff
from photos import save_photo

import indexer.index_pass
from indexer.run import index_once


def test_the_indexer_reports_each_bomb_as_a_bad_file_and_indexes_the_rest(settings):
    archive = settings.archive
    save_photo(archive / "fine.jpg", seed=1)
    (archive / "progressive.jpg").write_bytes(claims_progressive_jpeg(32_000, 24_000))
    (archive / "tile.tif").write_bytes(tiled_tiff(64, 64, (32_768, 32_768)))
    summary = index_once(settings, progress=False)
    reasons = dict(summary.failures)
    assert summary.added == 1
    assert reasons == {
        "progressive.jpg": "image needs too much memory to decode safely (about 1,522 MB for a 32,000 x 24,000 "
                           "progressive JPEG; at most 768 MB)",
        "tile.tif": "TIFF claims 32,768 x 32,768 pixel tiles for a 64 x 64 image"}


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

"""The text reader's child processes (the real children, no stand-ins): under its own memory limit a picture it
cannot read fails in the child, in one sentence, and the process that asked reads on; several read at once; an
archive image comes with the small copy the indexer kept of its pixels, and its file is opened only where the
copy is not enough."""
from __future__ import annotations

import dataclasses
import io
import os
import resource
import signal
from concurrent.futures import FIRST_COMPLETED, wait

import numpy as np
import pytest
import rendered_text as rt

from findimage.config import ConfigError, Settings, load_settings
from findimage.imaging import prepare_bytes
from findimage.models.reader_process import ArchivePicture, ReaderPool, ReaderProcess, ReadingLimits
from findimage.models.text_reader import probe_copy

pytestmark = pytest.mark.slow


def png(picture: rt.Rendered) -> bytes:
    out = io.BytesIO()
    picture.image.save(out, "PNG")
    return out.getvalue()


def test_a_reader_over_its_memory_limit_fails_the_reading_and_the_caller_reads_on():
    mine = resource.getrlimit(resource.RLIMIT_DATA)
    normal = ReadingLimits.of(Settings())
    tight = ReaderProcess(dataclasses.replace(normal, memory=16 * 2**20))  # below what the engine needs to load
    try:
        for _ in range(2):  # the child that ran out ended; the next picture gets a new one, which fails alike
            failed = tight.read(png(rt.error_dialog()))
            assert (failed.state, failed.lines) == ("failed", ())
            assert failed.reason == \
                "reading its text needed more than the text reader's 16 MB (FINDIMAGE_OCR_MEMORY_MB)"
    finally:
        tight.close()

    assert resource.getrlimit(resource.RLIMIT_DATA) == mine, "the limit is the child's, not the caller's"
    assert np.ones(64 * 2**20, np.uint8).sum() == 64 * 2**20  # the caller allocates as before
    reader = ReaderProcess(normal)
    try:
        read = reader.read(png(rt.error_dialog()))
    finally:
        reader.close()
    assert read.state == "read" and rt.ERROR_DIALOG in [line.text for line in read.lines]


def test_the_limit_is_a_setting_in_megabytes():
    assert Settings().ocr_memory_mb == 2048 and ReadingLimits.of(Settings()).memory == 2048 * 2**20
    settings = load_settings({"FINDIMAGE_OCR_MEMORY_MB": "1024"}, env_file=None)
    assert ReadingLimits.of(settings).memory == 1024 * 2**20
    with pytest.raises(ConfigError, match="FINDIMAGE_OCR_MEMORY_MB"):
        load_settings({"FINDIMAGE_OCR_MEMORY_MB": "100"}, env_file=None)  # the engine alone takes ~360 MB


def texts(read) -> list[str]:
    return [line.text for line in read.lines]


def test_two_pictures_are_read_at_once_and_a_reader_held_up_holds_up_no_other():
    pool = ReaderPool(dataclasses.replace(ReadingLimits.of(Settings()), readers=2, timeout_seconds=600))
    try:
        started = [pool.submit(png(rt.error_dialog())) for _ in range(2)]  # both children up, engines loaded
        assert all(rt.ERROR_DIALOG in texts(f.result(timeout=300)) for f in started)
        children = [reader._process.pid for reader in pool._readers]
        assert len(set(children)) == 2
        os.kill(children[0], signal.SIGSTOP)  # one reader is held up on whatever picture it takes next
        try:
            slide, dialog = pool.submit(png(rt.german_slide())), pool.submit(png(rt.error_dialog()))
            done, held = wait([slide, dialog], timeout=300, return_when=FIRST_COMPLETED)
            assert len(done) == 1 and len(held) == 1, "the other reader read its picture meanwhile"
        finally:
            os.kill(children[0], signal.SIGCONT)
        assert rt.GERMAN_SLIDE in texts(slide.result(timeout=300))
        assert rt.ERROR_DIALOG in texts(dialog.result(timeout=300))
    finally:
        pool.close()


def archive_picture(root, name: str, picture: rt.Rendered) -> ArchivePicture:
    """An archive JPEG as the indexer sends it to be read: with the copy of the pixels it decoded to embed it."""
    out = io.BytesIO()
    picture.image.save(out, "JPEG", quality=92)
    data = out.getvalue()
    (root / name).write_bytes(data)
    stat = (root / name).stat()
    prepared = prepare_bytes(data, 224)
    return ArchivePicture(str(root), name, stat.st_size, stat.st_mtime, probe_copy(prepared.image),
                          (prepared.width, prepared.height))


def test_a_photo_without_text_is_read_from_its_embedding_copy_and_its_file_is_not_opened_again(tmp_path):
    photo = archive_picture(tmp_path, "photo.jpg", rt.photo_without_text(6, (4032, 3024)))
    sign = archive_picture(tmp_path, "sign.jpg", rt.large_photo_with_small_sign())
    (tmp_path / "photo.jpg").unlink()
    (tmp_path / "sign.jpg").rename(tmp_path / "moved.jpg")
    reader = ReaderProcess(ReadingLimits.of(Settings()))
    try:
        without_text = reader.read(photo)
        assert (without_text.state, without_text.lines) == ("read", ())
        gone = reader.read(sign)  # its probe found a line: the sign is read from the file, decoded whole
        assert (gone.state, gone.reason) == ("failed", "cannot read: file not found")
        (tmp_path / "moved.jpg").rename(tmp_path / "sign.jpg")
        read = reader.read(sign)
    finally:
        reader.close()
    assert texts(read) == ["Bahnhofstraße 12"]
    left, top, right, bottom = rt.large_photo_with_small_sign().where  # corners in the original's pixels
    assert all(left - 40 <= x <= right + 40 and top - 40 <= y <= bottom + 40 for x, y in read.lines[0].box)

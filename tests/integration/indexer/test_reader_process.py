"""The text reader's child process under its own memory limit: a picture it cannot read within the limit
fails in the child, in one sentence, and the process that asked reads on (the real child, no stand-ins)."""
from __future__ import annotations

import dataclasses
import io
import resource

import numpy as np
import pytest
import rendered_text as rt

from findimage.config import ConfigError, Settings, load_settings
from findimage.models.reader_process import ReaderProcess, ReadingLimits

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

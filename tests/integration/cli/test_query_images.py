"""Query images are held to their own, lower pixel limit (FINDIMAGE_MAX_QUERY_PIXELS), read from the header, and
an image file is read no further than the decode budget (FINDIMAGE_DECODE_BUDGET_MB)."""
from __future__ import annotations

import pytest
from PIL import Image

from findimage_cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from indexer.run import index_once


@pytest.fixture
def indexed(settings, archive):
    index_once(settings)
    return archive


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_huge_query_image_is_refused_with_its_size(indexed, capsys, tmp_path):
    bomb = tmp_path / "huge.png"
    Image.new("1", (12_000, 12_000)).save(bomb)  # ~20 kB on disk, 144 MP (about 2 GB as RGB) once decoded
    assert bomb.stat().st_size < 100_000
    code, out, err = run(capsys, "search", "--image", str(bomb))
    assert code == EXIT_ERROR and out == ""
    assert err.strip() == ("findimage: image too large to decode safely (12,000 x 12,000 pixels; "
                           "at most 40 megapixels)")


def test_the_query_limit_is_a_setting_below_the_indexers(indexed, capsys, tmp_path, monkeypatch):
    picture = tmp_path / "wide.png"
    Image.new("RGB", (3000, 2000), (200, 120, 40)).save(picture)  # 6 MP: indexed and searched by default
    assert run(capsys, "search", "--image", str(picture), "-k", "1")[0] == EXIT_OK

    monkeypatch.setenv("FINDIMAGE_MAX_QUERY_PIXELS", "5000000")
    code, _, err = run(capsys, "search", "--image", str(picture))
    assert code == EXIT_ERROR and "(3,000 x 2,000 pixels; at most 5 megapixels)" in err

    monkeypatch.setenv("FINDIMAGE_MAX_QUERY_PIXELS", "100000")
    code, _, err = run(capsys, "search", "--image", str(picture))
    assert code == EXIT_USAGE and "FINDIMAGE_MAX_QUERY_PIXELS=100000 must be at least 1000000" in err


def test_a_query_image_file_is_read_no_further_than_the_decode_budget(indexed, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FINDIMAGE_DECODE_BUDGET_MB", "16")
    large = tmp_path / "large.jpg"
    with large.open("wb") as file:
        file.truncate(17 * 2**20)  # larger than the budget: refused from its size, not read
    code, out, err = run(capsys, "search", "--image", str(large))
    assert code == EXIT_ERROR and out == ""
    assert err.strip() == f"findimage: cannot read {large}: file too large (17 MB; at most 16 MB)"

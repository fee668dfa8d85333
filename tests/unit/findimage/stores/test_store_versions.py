"""A store records the findimage release that wrote it: one written by the previous release opens upgraded,
with its documents and searches as they were; one written by a newer release is refused in one sentence
and left as it was."""
from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from findimage import __version__
from findimage.errors import StoreTooNew
from findimage.records import image_id_for
from findimage.stores.embedded.schema import SCHEMA_VERSION
from findimage.stores.embedded.store import EmbeddedStore

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "stores"


def meta(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / "findimage.sqlite") as db:
        return dict(db.execute("SELECT key, value FROM meta"))


def vector(seed: int) -> np.ndarray:
    """As the fixture's maker drew them (tests/fixtures/stores/README.md)."""
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_store_written_by_the_previous_release_opens_upgraded_with_its_documents_and_searches(tmp_path):
    with gzip.open(FIXTURES / "embedded-0.2.0.sqlite.gz") as fixture:
        (tmp_path / "findimage.sqlite").write_bytes(fixture.read())
    assert "findimage_version" not in meta(tmp_path) and meta(tmp_path)["schema_version"] == "4"

    store = EmbeddedStore(tmp_path)
    try:
        assert store.count() == 3
        assert [m.relative_path for m in store.knn(vector(3), 1)] == ["office/whiteboard.png"]
        assert [m.relative_path for m in store.text_ranking(vector(1), ["quarterly"], 5)] == ["office/whiteboard.png"]
        assert store.get(image_id_for("nature/mountain-0.png")).taken == "2024-06-01T12:00:00"
    finally:
        store.close()
    assert (meta(tmp_path)["schema_version"], meta(tmp_path)["findimage_version"]) == (str(SCHEMA_VERSION),
                                                                                       __version__)


def test_a_new_store_records_this_release(tmp_path):
    EmbeddedStore(tmp_path).close()
    assert (meta(tmp_path)["schema_version"], meta(tmp_path)["findimage_version"]) == (str(SCHEMA_VERSION),
                                                                                       __version__)


def test_a_store_written_by_a_newer_release_is_refused_and_not_written(tmp_path):
    EmbeddedStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "findimage.sqlite", isolation_level=None)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 2),))
    db.execute("UPDATE meta SET value='0.4.0' WHERE key='findimage_version'")
    db.execute("DROP TABLE removed")  # what a newer schema might have changed: not made again here
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = (tmp_path / "findimage.sqlite").read_bytes()

    for erase_deleted in (False, True):
        with pytest.raises(StoreTooNew) as refused:
            EmbeddedStore(tmp_path, erase_deleted=erase_deleted)
        assert str(refused.value) == (f"The store in {tmp_path} was written by findimage 0.4.0 (schema "
                                      f"{SCHEMA_VERSION + 2}); this is findimage {__version__} (schema "
                                      f"{SCHEMA_VERSION}): upgrade findimage, or restore a backup made by this "
                                      "version.")
    assert (tmp_path / "findimage.sqlite").read_bytes() == before


def layout(folder: Path) -> dict[str, object]:
    """What a database holds besides its rows: every table's and index's name, each table's columns (name,
    type, NOT NULL, default, key) and each index's columns."""
    db = sqlite3.connect(folder / "findimage.sqlite")
    try:
        found: dict[str, object] = {}
        for kind, name in db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            pragma = "table_info" if kind == "table" else "index_info"
            found[f"{kind} {name}"] = [row[1:] for row in db.execute(f"PRAGMA {pragma}({name})")]
        return found
    finally:
        db.close()


# How each earlier schema left a database, made from a current one (schema 4: before the fingerprints; 3:
# before `texts.attempts`; 2: before the text read from images; 0: before path words and dates, and before
# versions were kept).
BEFORE_FINGERPRINTS = "DROP TABLE fingerprints; DROP TABLE fingerprint_keys; "
EARLIER = {
    "4": BEFORE_FINGERPRINTS + "UPDATE meta SET value='4' WHERE key='schema_version';",
    "3": BEFORE_FINGERPRINTS + "ALTER TABLE texts DROP COLUMN attempts; "
                               "UPDATE meta SET value='3' WHERE key='schema_version';",
    "2": BEFORE_FINGERPRINTS + "DROP TABLE texts; DROP TABLE text_words; DROP TABLE text_lines; "
         "UPDATE meta SET value='2' WHERE key='schema_version';",
    "0": BEFORE_FINGERPRINTS + "DROP TABLE texts; DROP TABLE text_words; DROP TABLE text_lines; "
         "DROP INDEX images_taken; "
         "DROP TABLE names; ALTER TABLE images DROP COLUMN taken; ALTER TABLE images DROP COLUMN taken_source; "
         "DELETE FROM meta WHERE key IN ('schema_version', 'findimage_version');",
}


@pytest.mark.parametrize("schema", sorted(EARLIER))
def test_a_store_of_an_earlier_schema_opens_with_the_tables_of_a_new_one(tmp_path, schema):
    new, old = tmp_path / "new", tmp_path / "old"
    for folder in (new, old):
        EmbeddedStore(folder).close()
    db = sqlite3.connect(old / "findimage.sqlite")
    db.executescript(EARLIER[schema])
    db.close()
    assert layout(old) != layout(new)

    EmbeddedStore(old).close()
    assert layout(old) == layout(new)
    assert (meta(old)["schema_version"], meta(old)["findimage_version"]) == (str(SCHEMA_VERSION), __version__)


def test_the_previous_release_s_store_opens_with_the_tables_of_a_new_one(tmp_path):
    with gzip.open(FIXTURES / "embedded-0.2.0.sqlite.gz") as fixture:
        (tmp_path / "findimage.sqlite").write_bytes(fixture.read())
    EmbeddedStore(tmp_path).close()
    EmbeddedStore(tmp_path / "new").close()
    assert layout(tmp_path) == layout(tmp_path / "new")

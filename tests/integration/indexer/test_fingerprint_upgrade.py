"""An index made before fingerprints were kept gains them on the next pass, each file decoded once at a
small size: no image goes through the model again, every vector stays as it was, and the duplicates
report then finds the copies."""
from __future__ import annotations

import sqlite3

import numpy as np
from es_support import both_stores
from near_copies import write_archive

from findimage.backends import open_store
from findimage.duplicates import duplicate_groups
from findimage.models.clip import SentenceTransformerEmbedder
from indexer.run import index_once


def as_before_fingerprints(settings) -> None:
    """The store as the release before fingerprints left it: documents without them (the embedded store's
    tables, and its schema version, from before)."""
    if settings.uses_elasticsearch:
        import es_support

        es = es_support.client(settings.elasticsearch_url)
        es.update_by_query(index=settings.index_name, refresh=True, conflicts="proceed", script={
            "source": "ctx._source.remove('fingerprint'); ctx._source.remove('fingerprint_keys')"})
        es.close()
        return
    db = sqlite3.connect(settings.data_dir / "findimage.sqlite")
    db.executescript("DROP TABLE fingerprints; DROP TABLE fingerprint_keys; "
                     "UPDATE meta SET value='4' WHERE key='schema_version';")
    db.close()


@both_stores
def test_an_index_without_fingerprints_gains_them_without_embedding_again(settings, monkeypatch):
    groups = write_archive(settings.archive, count=1)
    indexed = index_once(settings)
    assert indexed.fingerprinted == 0, "a new index is fingerprinted as it is embedded"
    as_before_fingerprints(settings)
    store = open_store(settings)
    vectors = {s.image_id: store.get(s.image_id).image_embedding for s in store.file_states().values()}
    assert len(store.fingerprint_pending()) == len(vectors) and duplicate_groups(store) == []
    store.close()

    calls = []
    embed_images = SentenceTransformerEmbedder.embed_images
    monkeypatch.setattr(SentenceTransformerEmbedder, "embed_images",
                        lambda self, images: calls.append(len(images)) or embed_images(self, images))
    summary = index_once(settings)

    assert calls == [] and summary.embedded == 0 and summary.unchanged == len(vectors)
    assert summary.fingerprinted == len(vectors)
    assert f"fingerprinted {len(vectors)} indexed image(s) for near copies (no re-embedding)" in summary.line()
    store = open_store(settings)
    try:
        assert store.fingerprint_pending() == []
        assert all(np.array_equal(store.get(image_id).image_embedding, vector) for image_id, vector in vectors.items())
        assert [sorted(m.relative_path for m in found.members) for found in duplicate_groups(store)] == list(
            groups.values())
    finally:
        store.close()
    assert index_once(settings).fingerprinted == 0

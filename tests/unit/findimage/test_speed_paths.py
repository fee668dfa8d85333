"""The fast paths keep results: int8 only after its fidelity check, shrinking and fast activations
change no embedding, thread and snapshot settings do what they say."""
from __future__ import annotations

import time

import faiss
import numpy as np
import pytest
import torch
from photos import jpeg_bytes, photo
from sentence_transformers import SentenceTransformer

from findimage.config import ConfigError, load_settings
from findimage.imaging import prepare_bytes
from findimage.models.clip import MIN_PER_STREAM, SentenceTransformerEmbedder
from findimage.models.runtime import PROBE_SENTENCES, quantize_int8, release_pages, use_torch_threads
from findimage.records import ImageDoc, image_id_for
from findimage.stores.embedded.store import EmbeddedStore
from findimage.stores.embedded.vector_index import VectorIndex, default_nprobe
from indexer.reading import read_and_decode
from indexer.scan import ArchiveFile


@pytest.fixture(scope="module")
def image_model(test_models):
    return str(test_models["image"])


def test_int8_is_used_only_after_its_fidelity_check(image_model):
    quantized = SentenceTransformerEmbedder(image_model, quantize="int8", min_cosine=0.5)
    quantized.load()
    assert quantized.quantized and quantized.fidelity.probes == 8
    assert 0.5 <= quantized.fidelity.min_cosine <= quantized.fidelity.mean_cosine <= 1.0001
    # a bar no quantized model clears: the exact model is kept, and its vectors are the fp32 ones
    refused = SentenceTransformerEmbedder(image_model, quantize="int8", min_cosine=1.0)
    exact = SentenceTransformerEmbedder(image_model)
    pictures = [photo(i, (300, 240)) for i in range(3)]
    refused.load()
    assert not refused.quantized and refused.fidelity.min_cosine < 1.0
    np.testing.assert_allclose(refused.embed_images(pictures), exact.embed_images(pictures), atol=1e-6)


def test_releasing_the_replaced_float32_pages_keeps_the_int8_model_intact(image_model):
    released = SentenceTransformerEmbedder(image_model, quantize="int8", min_cosine=0.5)
    kept = SentenceTransformer(image_model, device="cpu").eval()
    quantize_int8(kept)
    pictures = [photo(i, (224, 224)) for i in range(3)]
    np.testing.assert_allclose(released.embed_images(pictures), kept.encode(pictures, normalize_embeddings=True),
                               atol=1e-5)
    anonymous = np.ones(1 << 20, np.uint8)  # not from a weights file: must be left alone
    assert not release_pages([(anonymous.ctypes.data, anonymous.nbytes)]) and anonymous.all()


def test_the_text_model_is_checked_with_sentences(test_models):
    text = SentenceTransformerEmbedder(str(test_models["text"]), quantize="int8", min_cosine=0.5)
    vectors = text.embed_texts(["ein schneebedeckter Berg"])
    assert text.quantized and text.fidelity.probes == len(PROBE_SENTENCES)
    assert vectors.shape == (1, 512) and abs(np.linalg.norm(vectors[0]) - 1) < 1e-5


def test_shrinking_in_the_decode_thread_changes_no_embedding(image_model):
    embedder = SentenceTransformerEmbedder(image_model)
    big = prepare_bytes(jpeg_bytes(3, size=(2000, 1500))).image
    small = embedder.shrink(big)
    assert min(small.size) == embedder.image_input_side() == 224
    assert np.array_equal(embedder.embed_images([big]), embedder.embed_images([small]))
    tiny = photo(4, (100, 80))
    assert embedder.shrink(tiny) is tiny  # the processor upsamples those itself


def test_a_batch_split_over_inference_streams_gives_each_image_its_own_vector(image_model):
    embedder = SentenceTransformerEmbedder(image_model, threads=2)
    pictures = [photo(i, (240, 224)) for i in range(4 * MIN_PER_STREAM)]
    batch = embedder.embed_images(pictures)
    assert embedder._pool is not None  # the batch went through the streams
    one_by_one = np.vstack([embedder.embed_images([p]) for p in pictures])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)


def test_the_indexer_decodes_at_the_model_size(image_model, tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_bytes(5, size=(4032, 3024)))
    file = ArchiveFile("phone.jpg", path, path.stat().st_size, path.stat().st_mtime)
    loaded = read_and_decode(file, SentenceTransformerEmbedder(image_model))
    assert loaded.error is None and loaded.prepared.image.size == (298, 224)
    assert (loaded.prepared.width, loaded.prepared.height) == (4032, 3024)
    plain = read_and_decode(file)  # no embedder: the generic preparation
    assert min(plain.prepared.image.size) >= 224 and plain.sha256 == loaded.sha256


def test_fast_activations_match_the_original_model(image_model):
    embedder = SentenceTransformerEmbedder(image_model)
    original = SentenceTransformer(image_model, device="cpu")
    pictures = [photo(i, (224, 224)) for i in range(4)]
    expected = original.encode(pictures, normalize_embeddings=True)
    np.testing.assert_allclose(embedder.embed_images(pictures), expected, atol=1e-5)
    assert not any(type(m).__name__ == "QuickGELUActivation" for m in embedder.model.modules())


def test_thread_and_quantization_settings_are_read_and_checked():
    settings = load_settings({"FINDIMAGE_TORCH_THREADS": "1", "FINDIMAGE_QUANTIZE_MIN_COSINE": "0.995"}, env_file=None)
    assert settings.torch_threads == 1 and settings.quantize_min_cosine == 0.995
    with pytest.raises(ConfigError, match="FINDIMAGE_QUANTIZE_MIN_COSINE"):
        load_settings({"FINDIMAGE_QUANTIZE_MIN_COSINE": "1.5"}, env_file=None)
    use_torch_threads(1)  # the session's count comes back after the test (conftest)
    assert torch.get_num_threads() == 1
    use_torch_threads(0)  # 0 leaves torch as it is
    assert torch.get_num_threads() == 1


def _docs(n, prefix="v"):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [ImageDoc(image_id_for(f"{prefix}/{i}.jpg"), f"{i}.jpg", f"{prefix}/{i}.jpg", v, f"s{i}", 1, 1.0, 1, 1,
                     time.time(), "m") for i, v in enumerate(vectors)]


def test_an_unchanged_store_does_not_rewrite_its_snapshot(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.upsert(_docs(200))
    store.checkpoint()
    snapshot = next(tmp_path.glob("vectors-*.faiss"))
    written = snapshot.stat().st_mtime_ns
    reopened = EmbeddedStore(tmp_path)
    reopened.knn(np.ones(512, np.float32) / np.sqrt(512), k=3)
    reopened.checkpoint()  # nothing changed: same file, untouched
    assert [p.name for p in tmp_path.glob("vectors-*.faiss")] == [snapshot.name]
    assert snapshot.stat().st_mtime_ns == written
    reopened.upsert(_docs(1, prefix="new"))
    reopened.checkpoint()  # a change: a new snapshot replaces the old one
    assert [p.name for p in tmp_path.glob("vectors-*.faiss")] != [snapshot.name]
    assert len(EmbeddedStore(tmp_path).knn(np.ones(512, np.float32), k=500)) == 201


def test_ivf_tuning_rules():
    # nprobe grows with the lists but probes a shrinking share of them; enough lists are probed for recall.
    probes = {nlist: default_nprobe(nlist) for nlist in (64, 128, 1024, 4096, 16384)}
    assert all(1 <= p <= n for n, p in probes.items())
    assert list(probes.values()) == sorted(probes.values())
    shares = [p / n for n, p in probes.items()]
    assert shares == sorted(shares, reverse=True) and shares[-1] < shares[0]
    vectors = np.random.default_rng(1).standard_normal((3000, 512)).astype(np.float32)
    flat = VectorIndex.build(np.arange(3000), vectors, version=1)
    assert flat.kind == "flat" and not flat.outgrown() and flat.memory_bytes() >= 3000 * 512 * 4

    def ivf(nlist):
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(512), 512, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.add_with_ids(vectors, np.arange(3000))
        return VectorIndex(index, "ivf")

    # 3,000 vectors want ~4*sqrt(3000) = 256 lists: trained with 64 it has outgrown them, with 256 not
    assert ivf(64).outgrown() and not ivf(256).outgrown()
    # 8-bit codes (with ids and the lists' centroids beside them) take well under half the flat index's memory
    assert ivf(256).memory_bytes() < flat.memory_bytes() / 2

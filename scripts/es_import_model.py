"""Import a local sentence-transformers model into Elasticsearch as a started text_embedding model.

Usage: es_import_model.py ES_URL MODEL_DIR MODEL_ID [--replace]

Runs in the tools venv made by es_import_model.sh: eland 8.12.1 (the last eland that accepts
Elasticsearch 8.12) with torch 2.13 and transformers 4.33.2, whose BERT has eager attention only
(an `sdpa` op in the trace would crash the pytorch_inference of ES 8.12, libtorch 1.13.1).
An existing model is reused (and started if needed) unless --replace is given. Either way the
deployment is proven by a real _infer compared with the local model's own embedding.
"""

import argparse
import logging
import tempfile
import time

import numpy as np
from eland.common import parse_es_version
from eland.ml.pytorch import PyTorchModel
from eland.ml.pytorch.transformers import TransformerModel
from elasticsearch import Elasticsearch, NotFoundError
from sentence_transformers import SentenceTransformer

PROBE = "a snow covered mountain"


def model_exists(es: Elasticsearch, model_id: str) -> bool:
    try:
        es.ml.get_trained_models(model_id=model_id)
        return True
    except NotFoundError:
        return False


def deployment_state(es: Elasticsearch, model_id: str) -> str | None:
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return stats.get("deployment_stats", {}).get("state")


def upload(es: Elasticsearch, ptm: PyTorchModel, model_dir: str, max_seq_len: int) -> None:
    es_version = parse_es_version(es.info()["version"]["number"])
    tm = TransformerModel(model_id=model_dir, task_type="text_embedding", es_version=es_version)
    with tempfile.TemporaryDirectory() as tmp:
        model_path, config, vocab_path = tm.save(tmp)
        # ES would truncate at the tokenizer's 512; the sentence-transformers model truncates earlier.
        config.inference_config.tokenization.max_sequence_length = max_seq_len
        ptm.import_model(model_path=model_path, config_path=None, vocab_path=vocab_path, config=config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("es_url")
    p.add_argument("model_dir", help="local sentence-transformers model directory")
    p.add_argument("model_id", help="Elasticsearch model id (lowercase, digits, - _ .)")
    p.add_argument("--replace", action="store_true", help="delete and re-import an existing model")
    args = p.parse_args()

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # eland 8.12 uses a deprecated attr
    t0 = time.monotonic()
    es = Elasticsearch(args.es_url, request_timeout=300)
    ptm = PyTorchModel(es, args.model_id)
    local = SentenceTransformer(args.model_dir, device="cpu")

    exists = model_exists(es, args.model_id)
    if exists and args.replace:
        es.ml.stop_trained_model_deployment(model_id=args.model_id, force=True)
        ptm.delete()
    if not exists or args.replace:
        upload(es, ptm, args.model_dir, local.max_seq_length)
    if deployment_state(es, args.model_id) != "started":
        es.ml.stop_trained_model_deployment(model_id=args.model_id, force=True)  # clears a failed one
        ptm.start(timeout="300s")

    # _start can answer 200 while the native process then fails: prove it with a real _infer.
    cfg = es.ml.get_trained_models(model_id=args.model_id)["trained_model_configs"][0]
    field = cfg["input"]["field_names"][0]
    dims = cfg["inference_config"]["text_embedding"]["embedding_size"]
    got = np.array(ptm.infer(docs=[{field: PROBE}])["inference_results"][0]["predicted_value"])
    want = local.encode(PROBE)
    cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    if len(got) != dims or cosine < 0.9999:
        raise SystemExit(f"{args.model_id}: _infer gave {len(got)} dims (expected {dims}), cosine {cosine:.6f}")
    print(f"{args.model_id}: started, field {field}, {dims} dims, cosine {cosine:.6f}, {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()

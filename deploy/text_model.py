"""The text model in Elasticsearch, for docker-compose's one-shot `text-model` service.

    python text_model.py    exit 0 if the model is there (started now if it was not) and answers with
                            FINDIMAGE_EMBEDDING_DIMS-dim vectors (default 512); exit 1 if not: (re)import it

Runs in Elastic's eland image (it has the elasticsearch client). Reads ES_URL, ES_USERNAME,
ES_PASSWORD (as eland does) and FINDIMAGE_INFER_MODEL_ID.
"""
import os
import sys

from elasticsearch import Elasticsearch, NotFoundError

PROBE = "a snow covered mountain"


def main() -> int:
    es = Elasticsearch(os.environ["ES_URL"], basic_auth=(os.environ["ES_USERNAME"], os.environ["ES_PASSWORD"]),
                       request_timeout=600)
    model_id = os.environ["FINDIMAGE_INFER_MODEL_ID"]
    dims = int(os.environ.get("FINDIMAGE_EMBEDDING_DIMS", "512"))
    try:
        config = es.ml.get_trained_models(model_id=model_id)["trained_model_configs"][0]
    except NotFoundError:
        print(f"text model {model_id}: not in Elasticsearch yet, importing it with eland", flush=True)
        return 1
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    if (stats.get("deployment_stats") or {}).get("state") != "started":
        print(f"text model {model_id}: starting its deployment", flush=True)
        try:
            es.ml.stop_trained_model_deployment(model_id=model_id, force=True)  # clears a failed one
            es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started", timeout="600s")
        except Exception as exc:  # noqa: BLE001
            print(f"text model {model_id}: cannot start it ({exc}); importing it again", flush=True)
            return 1
    field = config["input"]["field_names"][0]
    # _start can answer while the native process then fails: only a real _infer proves the model works.
    try:
        result = es.ml.infer_trained_model(model_id=model_id, docs=[{field: PROBE}], timeout="120s")
        got = len(result["inference_results"][0]["predicted_value"])
    except Exception as exc:  # noqa: BLE001
        print(f"text model {model_id}: _infer failed: {exc}", flush=True)
        return 1
    if got != dims:
        print(f"text model {model_id}: returns {got}-dim vectors, the image index needs {dims}", flush=True)
        return 1
    print(f"text model {model_id}: deployed, _infer gives {got}-dim vectors", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Text queries vectorized inside Elasticsearch by a deployed text_embedding model (`_infer`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, NotFoundError

from .embedders import ModelError, normalise_rows
from .records import DIMS
from .store import StoreUnavailable

IMPORT_HINT = ("eland_import_hub_model --url $ELASTICSEARCH_URL --hub-model-id "
               "sentence-transformers/clip-ViT-B-32-multilingual-v1 --task-type text_embedding --start")


class InferTextEmbedder:
    """POST _ml/trained_models/<id>/_infer (the seed's `.../deployment/_infer` is deprecated since 8.x)."""

    def __init__(self, client, model_id: str, timeout_seconds: float = 10.0, url: str = "",
                 expected_dims: int = DIMS):
        self.client = client
        self.expected_dims = expected_dims
        self.model_id = model_id
        self.timeout = f"{max(1, int(timeout_seconds))}s"
        self.url = url

    @classmethod
    def from_settings(cls, settings) -> "InferTextEmbedder":
        from .es_store import make_client

        return cls(make_client(settings), settings.infer_model_id, settings.es_timeout_seconds,
                   settings.elasticsearch_url)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        try:
            response = self.client.ml.infer_trained_model(
                model_id=self.model_id, docs=[{"text_field": t} for t in texts], timeout=self.timeout)
        except NotFoundError:
            raise ModelError(self._missing_message()) from None
        except (ConnectionError, ConnectionTimeout):
            raise StoreUnavailable(f"Elasticsearch at {self.url} is not reachable for text vectorization.") from None
        except ApiError as exc:
            raise ModelError(self._explain(exc)) from None
        vectors = [r.get("predicted_value") for r in response["inference_results"]]
        if any(v is None for v in vectors):
            raise ModelError(f"The model {self.model_id} did not return an embedding: {response['inference_results']}")
        return normalise_rows(np.asarray(vectors, dtype=np.float32))

    def load(self) -> None:
        """At start: the model exists, is deployed, answers, and fits the index."""
        self.check()

    def check(self) -> int:
        """Fail with what to run unless the model is deployed and its output dims match the index."""
        expected_dims = self.expected_dims
        try:
            config = self.client.ml.get_trained_models(model_id=self.model_id)["trained_model_configs"][0]
            stats = self.client.ml.get_trained_models_stats(model_id=self.model_id)["trained_model_stats"][0]
        except NotFoundError:
            raise ModelError(self._missing_message()) from None
        except (ConnectionError, ConnectionTimeout):
            raise StoreUnavailable(f"Elasticsearch at {self.url} is not reachable.") from None
        state = (stats.get("deployment_stats") or {}).get("state")
        if state != "started":
            reason = (stats.get("deployment_stats") or {}).get("reason", "")
            raise ModelError(
                f"The text model {self.model_id} is not deployed (state: {state or 'not started'}{', ' + reason if reason else ''}). "
                f"Start it: POST _ml/trained_models/{self.model_id}/deployment/_start")
        dims = config.get("inference_config", {}).get("text_embedding", {}).get("embedding_size")
        if expected_dims and dims and dims != expected_dims:
            raise ModelError(f"The text model {self.model_id} returns {dims}-dim vectors but the index holds "
                             f"{expected_dims}-dim image embeddings; deploy a model of the same space "
                             f"(clip-ViT-B-32-multilingual-v1).")
        self.embed_texts(["warm-up"])  # a deployment can report 'started' and still fail on first use
        return dims or expected_dims or 0

    def _missing_message(self) -> str:
        return (f"The text model {self.model_id} is not in Elasticsearch. Import and start it with eland: "
                f"{IMPORT_HINT} (or set FINDIMAGE_TEXT_EMBEDDER=local).")

    def _explain(self, exc: ApiError) -> str:
        reason = _reason(exc)
        if "not deployed" in reason or "no deployment" in reason or "not started" in reason:
            return (f"The text model {self.model_id} is not deployed. Start it: "
                    f"POST _ml/trained_models/{self.model_id}/deployment/_start")
        return f"Elasticsearch could not vectorize the query with {self.model_id}: {reason}"


def _reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", {})
    return (error.get("reason") if isinstance(error, dict) else str(error)) or str(exc)

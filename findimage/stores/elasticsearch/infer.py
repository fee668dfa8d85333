"""Text queries vectorized inside Elasticsearch by a deployed text_embedding model (`_infer`)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch, NotFoundError

from findimage.config import ElasticsearchSettings, public_url
from findimage.errors import BackendUnavailable, LicenseRefused, ModelError
from findimage.models.base import normalise_rows
from findimage.stores.elasticsearch.client import BUSY_STATUSES, access_denied, api_reason

log = logging.getLogger(__name__)

# Licenses that include machine learning on third-party (PyTorch) models; Elasticsearch refuses _infer
# on any other with 403 security_exception "current license is non-compliant for [ml]".
ML_LICENSES = ("trial", "platinum", "enterprise")

IMPORT_HINT = ("eland_import_hub_model --url $ELASTICSEARCH_URL --hub-model-id "
               "sentence-transformers/clip-ViT-B-32-multilingual-v1 --task-type text_embedding --start")


def license_sentence(license: str | None) -> str:
    named = f" ({license})" if license else ""
    return (f"Elasticsearch's license{named} does not allow ML inference for the text model: set "
            "FINDIMAGE_TEXT_EMBEDDER=local or use a license that includes machine learning "
            "(Platinum, Enterprise or the trial).")


class InferTextEmbedder:
    """POST _ml/trained_models/<id>/_infer (the blog post's `.../deployment/_infer` is deprecated since 8.x);
    a TextEmbedder of findimage.models.base.

    `expected_dims` is the dims of the image embeddings the queries are compared with: a number, or a
    callable asked once on first use (from_settings reads the index's mapping, so a 384-dim index is
    checked against 384, and an index not created yet against the 512 the indexer will create).
    """

    def __init__(self, client: Elasticsearch, model_id: str, timeout_seconds: float = 10.0, url: str | None = "",
                 expected_dims: int | Callable[[], int | None] | None = None):
        self.client = client
        self.model_id = model_id
        self.timeout = f"{max(1, int(timeout_seconds))}s"
        self.url = public_url(url)
        self._expected_dims = expected_dims
        self._field: str | None = None  # the model's input field, from its config

    @classmethod
    def from_settings(cls, settings: ElasticsearchSettings) -> InferTextEmbedder:
        from findimage.stores.elasticsearch.client import index_dims, make_client

        client = make_client(settings)
        return cls(client, settings.infer_model_id, settings.es_timeout_seconds, settings.elasticsearch_url,
                   expected_dims=lambda: index_dims(client, settings.index_name))

    @property
    def expected_dims(self) -> int | None:
        if callable(self._expected_dims):
            try:
                self._expected_dims = self._expected_dims()
            except (ConnectionError, ConnectionTimeout):
                raise BackendUnavailable(self._unreachable()) from None
        return self._expected_dims

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return self._embed(texts)
        except LicenseRefused:
            raise
        except ModelError as exc:
            refusal = self._license_refusal()
            if refusal is None:
                raise
            raise refusal from exc

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            response = self.client.ml.infer_trained_model(
                model_id=self.model_id, docs=[{self._input_field(): t} for t in texts], timeout=self.timeout)
        except NotFoundError:
            raise ModelError(self._missing_message()) from None
        except (ConnectionError, ConnectionTimeout):
            raise BackendUnavailable(self._unreachable()) from None
        except ApiError as exc:
            if _license_refused(exc):
                raise LicenseRefused(license_sentence(self.license())) from None
            if exc.meta.status in (401, 403):
                raise access_denied(self.url, exc.meta.status, api_reason(exc)) from None
            if exc.meta.status in BUSY_STATUSES and not _not_deployed(api_reason(exc)):
                raise BackendUnavailable(f"Elasticsearch at {self.url} could not vectorize the query now "
                                       f"({exc.meta.status}: {api_reason(exc)}).") from None
            raise ModelError(self._explain(exc)) from None
        results = response["inference_results"]
        predicted = [r.get("predicted_value") for r in results]
        if any(v is None for v in predicted):
            error = next((r.get("error") for r in results if r.get("predicted_value") is None), results)
            raise ModelError(f"The text model {self.model_id} returned no embedding: {error}")
        vectors = np.asarray(predicted, dtype=np.float32)
        expected = self.expected_dims
        if expected and vectors.shape[1] != expected:
            raise ModelError(self._dims_message(vectors.shape[1], expected))
        return normalise_rows(vectors)

    def load(self) -> None:
        """At start: the model exists, is deployed, answers, and fits the index."""
        self.check()

    def check(self) -> int:
        """Fail with what to run unless the model is deployed and its output dims match the index."""
        try:
            return self._check()
        except LicenseRefused:
            raise
        except ModelError as exc:
            # A basic license cannot import or start the model either: say what would fix all of it.
            refusal = self._license_refusal()
            if refusal is None:
                raise
            raise refusal from exc

    def license(self) -> str | None:
        """The cluster's license, e.g. 'basic' or 'trial, expired'; None if it cannot be read."""
        try:
            info = self.client.license.get()["license"]
        except (ApiError, ConnectionError, ConnectionTimeout, KeyError, TypeError):
            return None  # e.g. an API key without the monitor privilege
        kind, status = info.get("type") or "unknown", info.get("status") or "active"
        return kind if status == "active" else f"{kind}, {status}"

    def _license_refusal(self) -> LicenseRefused | None:
        """The license sentence when the license explains a failure."""
        license = self.license()
        if license is not None and license not in ML_LICENSES:
            return LicenseRefused(license_sentence(license))
        return None

    def _check(self) -> int:
        try:
            config = self.client.ml.get_trained_models(model_id=self.model_id)["trained_model_configs"][0]
            stats = self.client.ml.get_trained_models_stats(model_id=self.model_id)["trained_model_stats"][0]
        except NotFoundError:
            raise ModelError(self._missing_message()) from None
        except (ConnectionError, ConnectionTimeout):
            raise BackendUnavailable(self._unreachable()) from None
        self._field = (config.get("input", {}).get("field_names") or ["text_field"])[0]
        deployment = stats.get("deployment_stats") or {}
        state = deployment.get("state")
        start = f"POST _ml/trained_models/{self.model_id}/deployment/_start"
        if state == "failed" or any(_route(n)[0] == "failed" for n in deployment.get("nodes", [])):
            raise ModelError(f"The text model {self.model_id} failed to deploy ({_node_reasons(deployment)}); "
                             f"check the Elasticsearch log, re-import it with eland if needed, then stop and start "
                             f"its deployment ({start}).")
        if state != "started":
            now = f"state: {state}" if state else "no deployment"
            raise ModelError(f"The text model {self.model_id} is not deployed ({now}); start it with {start} "
                             "or eland_import_hub_model ... --start.")
        dims = config.get("inference_config", {}).get("text_embedding", {}).get("embedding_size")
        expected = self.expected_dims
        if expected and dims and dims != expected:
            raise ModelError(self._dims_message(dims, expected))
        self._embed(["warm-up"])  # a deployment can report 'started' and still fail on first use
        return dims or expected or 0

    def _input_field(self) -> str:
        if self._field is None:
            try:
                config = self.client.ml.get_trained_models(model_id=self.model_id)["trained_model_configs"][0]
                self._field = (config.get("input", {}).get("field_names") or ["text_field"])[0]
            except (NotFoundError, ApiError, ConnectionError, ConnectionTimeout):
                return "text_field"  # eland's default; the _infer call itself reports what is wrong
        return self._field

    def _dims_message(self, dims: int, expected: int) -> str:
        return (f"The text model {self.model_id} returns {dims}-dim vectors but the index holds {expected}-dim "
                "image embeddings; deploy a text model of the image model's embedding space "
                "(clip-ViT-B-32-multilingual-v1 for clip-ViT-B-32) and set FINDIMAGE_INFER_MODEL_ID to it.")

    def _unreachable(self) -> str:
        return (f"Elasticsearch at {self.url} is not reachable for text vectorization: check that it is running "
                "and that ELASTICSEARCH_URL is right.")

    def _missing_message(self) -> str:
        return (f"The text model {self.model_id} is not in Elasticsearch; import and start it with eland "
                f"({IMPORT_HINT}) or set FINDIMAGE_TEXT_EMBEDDER=local.")

    def _explain(self, exc: ApiError) -> str:
        reason = api_reason(exc)
        if _not_deployed(reason):
            return (f"The text model {self.model_id} is not deployed; start it with "
                    f"POST _ml/trained_models/{self.model_id}/deployment/_start.")
        return f"Elasticsearch could not vectorize the query with {self.model_id}: {reason}"


def _license_refused(exc: ApiError) -> bool:
    error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
    if not isinstance(error, dict) or exc.meta.status != 403:
        return False
    return "license.expired.feature" in error or "license" in str(error.get("reason", ""))


def _not_deployed(reason: str) -> bool:
    return any(s in reason for s in ("not deployed", "must be deployed", "no deployment", "not started"))


def _route(node: dict[str, Any]) -> tuple[str, str]:
    """(routing state, reason) of one node of a deployment's stats."""
    routing = node.get("routing_state")
    if isinstance(routing, dict):  # 8.x: {"routing_state": "failed", "reason": "..."}
        return routing.get("routing_state", ""), routing.get("reason", "")
    return routing or "", node.get("reason", "")


def _node_reasons(deployment: dict[str, Any]) -> str:
    reasons = [_route(n)[1].strip() for n in deployment.get("nodes", []) if _route(n)[1].strip()]
    reason = "; ".join(dict.fromkeys(reasons)) or deployment.get("reason") or "no reason given"
    return " ".join(reason.split())[:300]


"""Text queries through Elasticsearch's `_infer`, answered by the local text model while the license refuses it."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from findimage.errors import LicenseRefused
from findimage.models.base import TextEmbedder

log = logging.getLogger(__name__)


class FallbackTextEmbedder:
    """`_infer` first; the local text model (the same embedding space) while Elasticsearch's license
    refuses machine learning, e.g. after a 30-day trial has ended. The refusal is logged once, not per
    query; `_infer` is tried again every `retry_seconds`, so a renewed license needs no restart."""

    def __init__(self, remote: TextEmbedder, local_factory: Callable[[], TextEmbedder], retry_seconds: float = 600.0):
        self.remote = remote
        self._local_factory = local_factory
        self._local: TextEmbedder | None = None
        self.retry_seconds = retry_seconds
        self.refusal: LicenseRefused | None = None  # set while queries are answered locally
        self._refused_at = 0.0
        self._lock = threading.Lock()

    @property
    def local(self) -> TextEmbedder:
        with self._lock:
            if self._local is None:
                self._local = self._local_factory()
            return self._local

    @property
    def model_id(self) -> str:
        return self.local.model_id if self.refusal else self.remote.model_id

    def load(self) -> None:
        try:
            self.remote.load()
        except LicenseRefused as exc:
            self._fall_back(exc)
            self.local.load()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.refusal is None or time.monotonic() - self._refused_at >= self.retry_seconds:
            try:
                vectors = self.remote.embed_texts(texts)
            except LicenseRefused as exc:
                self._fall_back(exc)
            else:
                if self.refusal is not None:
                    self.refusal = None
                    log.warning("Elasticsearch runs the text model %s again: text queries use _infer.",
                                self.remote.model_id)
                return vectors
        return self.local.embed_texts(texts)

    def _fall_back(self, exc: LicenseRefused) -> None:
        self._refused_at = time.monotonic()
        if self.refusal is None:
            log.warning("%s Text queries use the local text model %s meanwhile.", exc, self.local.model_id)
        self.refusal = exc

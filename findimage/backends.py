"""Which implementation the settings ask for: the store, the image embedder and the text embedder.

The one module above the implementations (stores, local models, Elasticsearch's `_infer`), so none of
them imports another to find out which one is in use.
"""
from __future__ import annotations

from .embedders import SentenceTransformerEmbedder, TextEmbedder, model_fingerprint, shared_embedder
from .store import Store


def open_store(settings, writer: bool = False) -> Store:
    """The configured store. Only the indexer opens it as `writer`: it may create the index, readers never do."""
    if settings.uses_elasticsearch:
        from .es_store import ElasticsearchStore

        return ElasticsearchStore.from_settings(settings, writer=writer)
    from .embedded_store import EmbeddedStore

    return EmbeddedStore(settings.data_dir)


def image_embedder(settings) -> SentenceTransformerEmbedder:
    return shared_embedder(settings.image_model, settings.quantize, settings.quantize_min_cosine,
                           settings.torch_threads)


def local_text_embedder(settings) -> SentenceTransformerEmbedder:
    return shared_embedder(settings.text_model, settings.quantize, settings.quantize_min_cosine,
                           settings.torch_threads)


def text_embedder(settings) -> TextEmbedder:
    """The local text model, or Elasticsearch's `_infer` (falling back to the local model while a license
    refuses it, unless FINDIMAGE_TEXT_FALLBACK=off)."""
    if settings.text_embedder == "elasticsearch":
        from .es_infer import InferTextEmbedder

        remote = InferTextEmbedder.from_settings(settings)
        if settings.text_fallback == "off":
            return remote
        from .text_fallback import FallbackTextEmbedder

        return FallbackTextEmbedder(remote, lambda: local_text_embedder(settings))
    return local_text_embedder(settings)


def text_model_id(settings) -> str:
    """The id of the text model queries are vectorized with, as the index records it."""
    return model_fingerprint(settings.infer_model_id if settings.text_embedder == "elasticsearch"
                             else settings.text_model)

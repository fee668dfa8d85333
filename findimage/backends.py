"""The one factory: every choice the settings make between implementations is made here.

The store, the image and text embedders, the bot's seen keys (shared by replicas), the indexing lease,
and the state of Elasticsearch's `_infer`. Outside a store's package only this module (and the CLI's
`keys` command) imports it (tests/test_architecture.py), so none of the implementations, the bot or
the indexer asks which store is in use.
"""
from __future__ import annotations

import contextlib
import dataclasses

from findimage.config import Settings
from findimage.models import factory
from findimage.models.base import ImageEmbedder, TextEmbedder
from findimage.models.runtime import RuntimeOptions
from findimage.remembered import Remembered
from findimage.stores.base import Backups, PassLease, SeenKeys, ServerCheckup, Store


def open_store(settings: Settings, writer: bool = False) -> Store:
    """The configured store. Only the indexer opens it as `writer`: it may create the index, readers never do."""
    if settings.uses_elasticsearch:
        from findimage.stores.elasticsearch.store import ElasticsearchStore

        # A writer may create the index: its vectors are the image model's size (the model is asked only then).
        return ElasticsearchStore.from_settings(settings, writer=writer,
                                                dims=lambda: image_embedder(settings).vector_size())
    from findimage.stores.embedded.store import EmbeddedStore

    return EmbeddedStore(settings.data_dir)


def server_checkup(settings: Settings) -> ServerCheckup | None:
    """Elasticsearch's version, license and what the credentials in use may do (`findimage doctor`); None for
    the embedded store, which has no server."""
    if not settings.uses_elasticsearch:
        return None
    from findimage.stores.elasticsearch.privileges import checkup

    return checkup(settings)


def using_store(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Held for the whole life of a process that keeps the store open (the bot, the indexer, a worker): the
    embedded store's data folder is not restored under it (findimage.locks). Elasticsearch's restore moves
    aliases, as rebuilds do, under running processes: nothing to hold there."""
    if settings.uses_elasticsearch:
        return contextlib.nullcontext()
    from findimage.locks import using_data_folder

    return using_data_folder(settings.data_dir)


def open_remembered(settings: Settings) -> Remembered | None:
    """The images remembered from Slack channels (None with FINDIMAGE_REMEMBER=off): a store of their own
    beside the archive's (`<data dir>/remembered`, or the `<index>-remembered` alias) and the registry of
    channels and postings. The bot writes it; `findimage search --channel` reads it."""
    if settings.remember == "off":
        return None
    if settings.uses_elasticsearch:
        from findimage.stores.elasticsearch.client import make_client
        from findimage.stores.elasticsearch.names import remembered_alias
        from findimage.stores.elasticsearch.registry import ElasticsearchRegistry
        from findimage.stores.elasticsearch.store import ElasticsearchStore

        client = make_client(settings)
        # Its indices are made by the first write (the bot starts, and answers from the archive, while
        # Elasticsearch is away, and creates nothing before a channel is remembered); one shard holds them.
        store = ElasticsearchStore(client, dataclasses.replace(settings, es_shards=1),
                                   alias=remembered_alias(settings.index_name), refresh_deletes=True,
                                   dims=lambda: image_embedder(settings).vector_size())
        return Remembered(store, ElasticsearchRegistry(client, settings.index_name, settings.elasticsearch_url),
                          shared=True)
    from findimage.stores.embedded.registry import EmbeddedRegistry
    from findimage.stores.embedded.store import EmbeddedStore

    folder = settings.data_dir / "remembered"
    return Remembered(EmbeddedStore(folder, erase_deleted=True), EmbeddedRegistry(folder))


def backups(settings: Settings, plain_files: tuple[str, ...] = ()) -> Backups:
    """Backups of the configured store: the embedded data folder copied into a folder (with `plain_files`,
    the small files beside the stores, e.g. the indexer's state), or Elasticsearch's indices in a snapshot
    of FINDIMAGE_ES_SNAPSHOT_REPOSITORY."""
    if settings.uses_elasticsearch:
        from findimage.stores.elasticsearch.snapshots import Snapshots

        return Snapshots.from_settings(settings)
    from findimage.stores.embedded.backup import FolderBackups

    return FolderBackups(settings.data_dir, plain_files)


def image_embedder(settings: Settings) -> ImageEmbedder:
    """FINDIMAGE_IMAGE_MODEL's embedder (on torch or ONNX Runtime: findimage.models.factory chooses)."""
    return factory.image_embedder(settings.image_model, RuntimeOptions.of(settings))


def local_text_embedder(settings: Settings) -> TextEmbedder:
    """FINDIMAGE_TEXT_MODEL's embedder, run in this process."""
    return factory.text_embedder(settings.text_model, RuntimeOptions.of(settings))


def text_embedder(settings: Settings) -> TextEmbedder:
    """The local text model, or Elasticsearch's `_infer` (falling back to the local model while a license
    refuses it, unless FINDIMAGE_TEXT_FALLBACK=off)."""
    if settings.text_embedder == "elasticsearch":
        from findimage.stores.elasticsearch.infer import InferTextEmbedder

        remote = InferTextEmbedder.from_settings(settings)
        if settings.text_fallback == "off":
            return remote
        from findimage.models.fallback import FallbackTextEmbedder

        return FallbackTextEmbedder(remote, lambda: local_text_embedder(settings))
    return local_text_embedder(settings)


def text_model_id(settings: Settings) -> str:
    """The id of the text model queries are vectorized with, as the index records it."""
    if settings.text_embedder == "elasticsearch":
        from findimage.models.clip import model_fingerprint

        return model_fingerprint(settings.infer_model_id)
    return factory.model_fingerprint(settings.text_model)


def seen_keys(settings: Settings, memory: SeenKeys) -> SeenKeys:
    """Keys already answered: shared through Elasticsearch by every bot replica (`memory`, this
    process's own, answers while Elasticsearch cannot), else `memory` alone (one bot process is all
    the embedded store supports)."""
    if not settings.uses_elasticsearch:
        return memory
    from .stores.elasticsearch.client import make_client
    from .stores.elasticsearch.seen import SharedSeen

    return SharedSeen(make_client(settings), settings.index_name, memory, url=settings.elasticsearch_url)


def indexing_lease(settings: Settings) -> PassLease | None:
    """The lease that keeps indexing passes on other machines out (Elasticsearch: `take()`, `lost`,
    `release()`, `holder()`, `close()`), or None where the data folder's lock file is enough."""
    if not settings.uses_elasticsearch:
        return None
    from .stores.elasticsearch.lease import ElasticsearchPassLease

    return ElasticsearchPassLease(settings)


def text_embedder_state(settings: Settings) -> str | None:
    """For `findimage status`: whether Elasticsearch runs the text model, or the sentence saying why not
    (license, deployment); None when text queries use the local model."""
    if settings.text_embedder != "elasticsearch":
        return None
    from elasticsearch import ApiError

    from .errors import BackendUnavailable, LicenseRefused, ModelError
    from .stores.elasticsearch.infer import InferTextEmbedder

    try:
        InferTextEmbedder.from_settings(settings).check()
    except LicenseRefused as exc:
        if settings.text_fallback == "off":
            return f"{exc} Text queries fail (FINDIMAGE_TEXT_FALLBACK=off)."
        local = factory.model_fingerprint(settings.text_model)
        return f"{exc} Text queries use the local text model {local} meanwhile."
    except (ModelError, BackendUnavailable) as exc:
        return str(exc)
    except ApiError as exc:  # e.g. the indexer's key, which may not read trained models: not a failure of status
        return f"not checked ({exc.meta.status}: {exc.message})."
    return "deployed and answering"

"""The alias and its concrete indices on Elasticsearch: the mapping, creation with the configured layout
(shards, replicas), full rebuilds beside the live index with an atomic alias swap and a rollback copy,
and the status lines. ElasticsearchStore (store.py) holds one and adds documents and searches.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from elasticsearch import ApiError, BadRequestError, ConnectionTimeout, Elasticsearch, NotFoundError, TransportError

from findimage import __version__
from findimage.config import ElasticsearchSettings, public_url
from findimage.errors import StoreError, refuse_newer_schema
from findimage.stores.elasticsearch.client import (
    access_denied,
    error_type,
    index_dims,
    unavailable_on_connection_errors,
)
from findimage.stores.elasticsearch.names import generation, generation_number, generations_pattern
from findimage.stores.elasticsearch.query import NEW_FIELDS

log = logging.getLogger(__name__)


def mapping(dims: int, index_options: str, **graph: int) -> dict:
    """The documents' mapping; `graph` is the HNSW graph's `m` and `ef_construction` (none: Elasticsearch's own)."""
    vector_index: dict[str, Any] = {"type": index_options}
    if index_options.endswith("hnsw"):  # the flat types have no graph
        vector_index.update(graph)
    return {
        "dynamic": "strict",
        "properties": {
            "image_id": {"type": "keyword"},
            "image_name": {"type": "keyword"},
            "relative_path": {"type": "keyword"},
            "image_embedding": {"type": "dense_vector", "dims": dims, "index": True, "similarity": "cosine",
                                "index_options": vector_index},
            "sha256": {"type": "keyword"},
            "size": {"type": "long"},
            "mtime": {"type": "double"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "indexed_at": {"type": "double"},
            "model_id": {"type": "keyword"},
            **NEW_FIELDS,
        },
    }


# The indices' layout as this release writes them (mapping, _meta keys), recorded in each concrete index's
# _meta with the release that made or last upgraded it. 1 is the first recorded (0: an index made before);
# an index of a higher one was written by a newer release and is neither read nor written.
SCHEMA_VERSION = 1
META_SCHEMA = "schema_version"
META_WRITTEN_BY = "findimage_version"


def written(meta: dict) -> tuple[int, str | None]:
    """(schema, release) an index's _meta records."""
    schema = meta.get(META_SCHEMA)
    return (schema if isinstance(schema, int) else 0), meta.get(META_WRITTEN_BY)


def refuse_newer(index: str, meta: dict) -> None:
    """StoreTooNew for an index whose _meta says a newer release wrote it."""
    schema, written_by = written(meta)
    refuse_newer_schema(f"The index {index}", written_by, schema, SCHEMA_VERSION)


def stamped(meta: dict | None) -> dict:
    """`meta` with this release and its schema recorded."""
    return {**(meta or {}), META_SCHEMA: SCHEMA_VERSION, META_WRITTEN_BY: __version__}


# What the indexer does to its indices: checked when the store is opened for writing, so credentials
# that may only search fail at the start of a pass with one sentence instead of on the first write.
# A rebuild's index is filled without refreshes (the fastest bulk indexing) until its swap; this also tells it
# from the index a rollback left behind, which a worker must not write into (write_into).
BUILDING_REFRESH = "-1"
WRITER_PRIVILEGES = ["create_index", "write", "delete_index", "manage", "read", "view_index_metadata"]


class IndexLayout:
    """The alias's concrete indices as ElasticsearchStore writes them: created on first use with the
    configured mapping and layout, rebuilt beside the live one, swapped, rolled back, described."""

    def __init__(self, client: Elasticsearch, settings: ElasticsearchSettings, alias: str,
                 dims: int | Callable[[], int] | None):
        """`settings` lay out the indices (FINDIMAGE_ES_*): each is read where a new index is made or rebuilt."""
        self.client = client
        self.settings = settings
        self.url = public_url(settings.elasticsearch_url)  # only ever shown: the client holds the credentials
        self.alias = alias
        self._dims = dims  # the image model's vector size, learnt where an index is made
        self.write_index: str | None = None  # the concrete index a rebuild writes into
        self.ready = False
        self._index_dims: int | None = None  # dims of the index behind the alias, once known

    @property
    def dims(self) -> int:
        """The vector size a new index maps: the image model's (asked only when an index is made)."""
        if callable(self._dims):
            self._dims = self._dims()
        if not self._dims:
            raise StoreError(f"The vector size of a new index for {self.alias} is not known: only the indexer, "
                             "with its image model, creates one.")
        return self._dims

    @property
    def target(self) -> str:
        """Where writes go: the index being rebuilt, else the alias."""
        return self.write_index or self.alias

    def read_meta(self, index: str) -> dict:
        found = self.client.indices.get_mapping(index=index)
        return dict(next(iter(found.values()))["mappings"].get("_meta", {}))

    @unavailable_on_connection_errors
    def open_for_writing(self) -> None:
        """Fail now, in one sentence, unless these credentials may manage the alias's indices; create them."""
        names = [self.alias, generations_pattern(self.alias)]
        try:
            found: dict[str, Any] = self.client.security.has_privileges(
                index=[{"names": names, "privileges": WRITER_PRIVILEGES}]).body
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise
            found = {"has_all_requested": True}  # security is off: everything is allowed
        if not found.get("has_all_requested"):
            missing = sorted({p for index in found.get("index", {}).values() for p, ok in index.items() if not ok})
            raise access_denied(self.url, what=f"write the index {self.alias} (no {', '.join(missing)})")
        self.ensure()

    def missing(self) -> bool:
        return not self.client.indices.exists_alias(name=self.alias) and not self.client.indices.exists(
            index=self.alias)

    def ensure(self, sizes: Sequence[int] = ()) -> None:
        """Create the first concrete index (`<alias>-v1`) together with its alias on first use. `sizes`: the
        vector sizes of the documents about to be written: unless this store was given the image model's size
        as a number, a new index maps the most common of them (the others are then rejected per document),
        without loading a model to learn what the documents already say.

        Index and alias are made in one request under a fixed name, so processes starting at the same
        time end up sharing one index (the others get `resource_already_exists`) instead of each
        hanging the alias on an index of its own.
        """
        if self.ready:
            return
        if self.missing():
            if not isinstance(self._dims, int) and sizes:
                self._dims = Counter(sizes).most_common(1)[0][0]
            first = generation(self.alias, 1)
            try:
                self.create_concrete(first, alias=True)
            except BadRequestError as exc:
                if error_type(exc) != "resource_already_exists_exception":
                    raise
                if not self.client.indices.exists_alias(name=self.alias):  # v1 there, alias removed by hand
                    self.client.indices.put_alias(index=first, name=self.alias)
        else:
            # An index made by an earlier version: the mapping is strict, so the new fields must exist
            # before any document carries them (idempotent, and no reindex).
            for index in self.concrete_indices():
                mappings = self.client.indices.get_mapping(index=index)[index]["mappings"]
                meta = mappings.get("_meta", {})
                refuse_newer(index, meta)
                if any(name not in mappings.get("properties", {}) for name in NEW_FIELDS):
                    self.client.indices.put_mapping(index=index, properties=NEW_FIELDS)
                if written(meta)[0] < SCHEMA_VERSION:  # upgraded now: the release that did it is recorded
                    self.client.indices.put_mapping(index=index, meta=stamped(meta))
        self.ready = True

    def _replica_settings(self) -> dict:
        replicas = self.settings.es_replicas
        if "-" in replicas:  # e.g. "0-1": none on one node, a copy as soon as a second node joins
            return {"auto_expand_replicas": replicas}
        return {"auto_expand_replicas": "false", "number_of_replicas": int(replicas)}

    def create_concrete(self, name: str, meta: dict | None = None, alias: bool = False,
                         building: bool = False) -> str:
        """A concrete index with the configured shards and replicas; one being rebuilt is filled first with
        no replicas and no refresh (the fastest bulk indexing), and gets the configured ones before the swap."""
        layout = self.settings
        mappings = mapping(self.dims, layout.es_index_options, m=layout.es_hnsw_m,
                           ef_construction=layout.es_hnsw_ef_construction)
        mappings["_meta"] = stamped(meta)
        settings = {"number_of_shards": layout.es_shards, **self._replica_settings()}
        if building:
            settings.update({"auto_expand_replicas": "false", "number_of_replicas": 0,
                             "refresh_interval": BUILDING_REFRESH})
        self.client.indices.create(index=name, mappings=mappings, aliases={self.alias: {}} if alias else None,
                                   settings=settings)
        return name

    def concrete_indices(self) -> list[str]:
        try:
            return list(self.client.indices.get_alias(name=self.alias))
        except NotFoundError:
            return [self.alias] if self.client.indices.exists(index=self.alias) else []

    def _versions(self) -> dict[str, int]:
        """Every `<alias>-v<N>` index, with its N."""
        found = self.client.indices.get(index=generations_pattern(self.alias), expand_wildcards="open,closed",
                                        allow_no_indices=True, ignore_unavailable=True)
        numbers = {name: generation_number(self.alias, name) for name in found}
        return {name: n for name, n in numbers.items() if n is not None}

    def _orphans(self) -> list[str]:
        """Concrete indices of this alias it does not point at: the copy kept by the last rebuild, one
        left by an interrupted rebuild, or one rolled back from."""
        live = set(self.concrete_indices()) | {self.write_index}
        return sorted(i for i in self._versions() if i not in live)

    def _kept_and_stray(self) -> tuple[list[str], list[str]]:
        """Unaliased indices split into older generations than the live one (rollback copies) and newer."""
        versions, live = self._versions(), self.concrete_indices()
        newest_live = max((versions.get(i, 0) for i in live), default=0)
        orphans = self._orphans()
        return ([i for i in orphans if versions[i] < newest_live],
                [i for i in orphans if versions[i] >= newest_live])

    def rollback_command(self, previous: str, live: list[str]) -> str:
        actions = [{"add": {"index": previous, "alias": self.alias}},
                   *({"remove": {"index": i, "alias": self.alias}} for i in live if i != self.alias)]
        return f"POST _aliases {json.dumps({'actions': actions}, separators=(',', ':'))}"

    @unavailable_on_connection_errors
    def begin_rebuild(self) -> None:
        """A new concrete index receives the following writes; the alias keeps serving the old one.

        Indices the alias did not point at when this rebuild began go now: the copy the previous rebuild
        kept (this rebuild keeps the live index instead) and any left by an interrupted rebuild.
        """
        self.ensure()
        # Never reuse a name: a stray writer of an interrupted rebuild must not land in the new index.
        version = max(self._versions().values(), default=0) + 1
        kept, stray = self._kept_and_stray()
        for index in kept + stray:
            log.info("deleting %s (%s)", index, "the previous rollback copy" if index in kept
                     else "left by an interrupted or rolled-back rebuild")
            self.client.indices.delete(index=index, ignore_unavailable=True)
        current = self.concrete_indices()
        self.write_index = self.create_concrete(generation(self.alias, version),
                                                  self.read_meta(current[0]) if current else None, building=True)

    @unavailable_on_connection_errors
    def write_into(self, target: str | None) -> None:
        """Write into the live index (None, or the index the alias points at) or into the rebuild in progress,
        which another process began: a generation newer than every live one, behind no alias, still set up
        for building. Any other index, the rollback copy among them, is refused (StoreError): the target
        comes from the queue, which whoever can write to Redis can fill."""
        if target is None or target in self.concrete_indices():
            self.write_index = None
            return
        _, newer = self._kept_and_stray()
        if target not in newer or not self._building(target):
            raise StoreError(f"{target!r} is neither the live index of {self.alias} nor its rebuild in progress; "
                             "nothing is written into it.")
        self.write_index = target

    def _building(self, index: str) -> bool:
        """Whether `index` is still as create_concrete(building=True) made it (finish_rebuild turns refresh
        back on before the alias moves)."""
        found = self.client.indices.get_settings(index=index, name="index.refresh_interval")
        return any(str(value.get("settings", {}).get("index", {}).get("refresh_interval")) == BUILDING_REFRESH
                   for value in found.values())

    @unavailable_on_connection_errors
    def finish_rebuild(self) -> None:
        """Swap the alias to the rebuilt index in one atomic step; the old index stays, unaliased, as the
        rollback copy (`findimage status` shows the command) until the next rebuild begins."""
        new, old = self.write_index, self.concrete_indices()
        if new is None:
            return
        self.client.indices.refresh(index=new)
        self.force_merge(new)  # before the replicas: they then copy one merged segment instead of merging too
        # The configured replicas and refresh back before searches see the index; then wait until every
        # primary (and, where the cluster has the nodes, every copy) is assigned.
        self.client.indices.put_settings(index=new, settings={**self._replica_settings(), "refresh_interval": None})
        self.client.indices.refresh(index=new)
        self.client.cluster.health(index=new, wait_for_status="yellow", timeout="60s")
        actions = [{"remove": {"index": i, "alias": self.alias}} for i in old if i != self.alias]
        if self.alias in old:  # a plain index under the alias name (made outside findimage): replace it
            actions.append({"remove_index": {"index": self.alias}})
        self.client.indices.update_aliases(actions=[*actions, {"add": {"index": new, "alias": self.alias}}])
        self.write_index = None
        self._index_dims = None
        for index in old:
            if index != self.alias:
                log.info("kept %s as the rollback copy: %s", index, self.rollback_command(index, [new]))

    def force_merge(self, index: str) -> None:
        """Merge a rebuilt index into one segment, waiting at most FINDIMAGE_ES_FORCE_MERGE_MINUTES.

        A bulk-built index is dozens of segments, each with its own HNSW graph that every kNN search walks
        with the full num_candidates: one graph answers faster and finds more of the true neighbours. The
        swap waits for it, but not past the bound: a merge still running then goes on in the server (it
        cannot be cancelled) while the alias moves, and a failed one leaves the index as it was, searchable.
        """
        minutes = self.settings.es_force_merge_minutes
        if minutes <= 0:
            return
        started = time.monotonic()
        log.info("force-merging %s into one segment (at most %g min before the alias moves)", index,
                 minutes)
        try:
            # One request, never repeated: a retry would queue a second merge behind the first.
            self.client.options(request_timeout=60 * minutes, max_retries=0,
                                retry_on_timeout=False).indices.forcemerge(index=index, max_num_segments=1)
        except ConnectionTimeout:
            log.warning("the force-merge of %s is still running after %.0f s; the alias moves now and the merge "
                        "goes on in Elasticsearch", index, time.monotonic() - started)
            return
        except (ApiError, TransportError) as exc:
            log.warning("the force-merge of %s failed (%s); the alias moves to it unmerged", index, exc)
            return
        log.info("force-merged %s in %.0f s", index, time.monotonic() - started)

    @unavailable_on_connection_errors
    def drop(self) -> None:
        """Delete the alias's indices, including any left by an interrupted rebuild (tests, uninstall)."""
        doomed = self.concrete_indices() + self._orphans() + ([self.write_index] if self.write_index else [])
        for index in dict.fromkeys(doomed):
            self.client.indices.delete(index=index, ignore_unavailable=True)
        self.write_index = None
        self.ready = False

    def forget_dims(self) -> None:
        self._index_dims = None

    @unavailable_on_connection_errors
    def index_dims(self) -> int | None:
        """Dims of the vectors in the index behind the alias; None while there is no index."""
        if self._index_dims is None:
            self._index_dims = index_dims(self.client, self.alias)
        return self._index_dims

    @unavailable_on_connection_errors
    def details(self) -> list[tuple[str, str]]:
        """(label, value) lines for `findimage status`: server, alias -> index, rebuild leftovers."""
        info, health = self.client.info(), self.client.cluster.health()
        lines = [("server", f"Elasticsearch {info['version']['number']}, cluster {info['cluster_name']} "
                            f"({health['status']})")]
        concrete = self.concrete_indices()
        if not concrete:
            lines.append(("index", f"{self.alias} (not created yet: run `findimage index`)"))
        for index in concrete:
            field = self.client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["image_embedding"]
            options = field.get("index_options", {}).get("type", "flat")
            lines.append(("index", f"{self.alias} -> {index} ({field['dims']} dims, {options}; "
                                   f"{self._layout(index)})"))
        kept, stray = self._kept_and_stray()
        for index in kept:
            lines.append(("previous", f"{index} (kept by the last `findimage index --full` or `restore`; roll back "
                                      f"with {self.rollback_command(index, concrete)})"))
        for index in stray:
            lines.append(("rebuilding", f"{index} (a `findimage index --full` is running, was interrupted or "
                                        "was rolled back; the next one deletes it)"))
        return lines

    def _layout(self, index: str) -> str:
        """Shards, replicas (as configured and as assigned now) and the index's health."""
        found = self.client.indices.get_settings(index=index)[index]["settings"]["index"]
        expand = found.get("auto_expand_replicas", "false")
        replicas = f"replicas {expand} (now {found.get('number_of_replicas')})" if expand != "false" else \
            f"replicas {found.get('number_of_replicas')}"
        health = self.client.cluster.health(index=index)["status"]
        return f"{found.get('number_of_shards')} shard(s), {replicas}, {health}"

"""Backups on Elasticsearch: findimage's indices in a snapshot of FINDIMAGE_ES_SNAPSHOT_REPOSITORY (a
repository the cluster's admin registered), and their restore behind the aliases.

A backup is one snapshot of the concrete indices behind the alias (`<alias>-v<N>`), behind
`<alias>-remembered`, and `<alias>-channels` (an index, or an alias once restored), made while the bot and
the indexer run (each shard as of one commit, flushed first by Elasticsearch). Its metadata records the
findimage release, the indices' schema (index.SCHEMA_VERSION), which index plays which part, and their
counts (about: writes go on while it is made): the restore reads it back, so a snapshot made by another
alias or release is understood or refused.

A restore takes the indexing lease (no pass writes meanwhile), restores each index under a new name (the
next generation, `<alias>-v<N+1>` and alike: never over a live index), waits for it, and moves every
alias to the restored indices in one atomic request, as a `--full` rebuild moves the archive's. Searches
go on throughout, on the old indices until the swap. The archive index it replaces stays, unaliased, as
the rollback copy a rebuild keeps (`findimage status` shows the command); the remembered channels' are
deleted, as what was forgotten must not linger in copies. Replacing indices that hold documents needs
`force`. The metadata restores nothing else: no cluster state, no other index.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from findimage import __version__
from findimage.config import ElasticsearchSettings, public_url
from findimage.errors import EXIT_REFUSED, FindimageError, LeaseHeld, StoreError, refuse_newer_schema
from findimage.stores.elasticsearch.client import api_reason, error_type, make_client, unavailable_on_connection_errors
from findimage.stores.elasticsearch.index import SCHEMA_VERSION
from findimage.stores.elasticsearch.lease import LeaseDocument
from findimage.stores.elasticsearch.names import (
    channels_index,
    generation,
    generation_number,
    generations_pattern,
    remembered_alias,
)

ARCHIVE, REMEMBERED, CHANNELS = "archive", "remembered", "channels"
POLL_SECONDS = 1.0


class SnapshotRefused(FindimageError):
    """A snapshot that cannot be made or restored as asked; the message says what to do."""

    exit_code = EXIT_REFUSED


class Snapshots:
    def __init__(self, client: Elasticsearch, settings: ElasticsearchSettings):
        self.client = client
        self.settings = settings  # the repository (FINDIMAGE_ES_SNAPSHOT_REPOSITORY), the lease's time
        self.url = public_url(settings.elasticsearch_url)  # only ever shown
        self.alias = alias = settings.index_name
        # Each part's name (an alias, or an index of that name) and how the snapshot's metadata calls it.
        self.parts = {ARCHIVE: alias, REMEMBERED: remembered_alias(alias), CHANNELS: channels_index(alias)}

    @classmethod
    def from_settings(cls, settings: ElasticsearchSettings) -> Snapshots:
        return cls(make_client(settings), settings)

    # ---- backup -------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def make(self, target: str | None) -> list[str]:
        try:
            return self._make(target)
        finally:
            self.client.close()

    def _make(self, target: str | None) -> list[str]:
        self._may("create_snapshot", "make snapshots: use the backup key `findimage keys create` makes, or the "
                  "elastic user")
        repository = self._repository()
        name = target or f"{self.alias}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}".lower()
        indices = {part: live[0] for part, live in ((p, self._live(n)) for p, n in self.parts.items()) if live}
        if ARCHIVE not in indices:
            raise SnapshotRefused(f"There is no index {self.alias} in Elasticsearch at {self.url} to back up: run "
                                  "`findimage index` first (or check FINDIMAGE_INDEX).")
        # About how many each holds as the snapshot starts (from their statistics: the backup key may not read
        # them); writes made meanwhile may be in it too.
        counts = {part: self._documents(index) for part, index in indices.items()}
        metadata = {"findimage": __version__, "schema": SCHEMA_VERSION, "alias": self.alias,
                    "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "indices": indices,
                    "counts": counts}
        started = time.monotonic()
        try:
            self.client.snapshot.create(repository=repository, snapshot=name, indices=list(indices.values()),
                                        include_global_state=False, metadata=metadata, wait_for_completion=False)
        except ApiError as exc:
            if error_type(exc) == "invalid_snapshot_name_exception":
                raise SnapshotRefused(f"Elasticsearch refused the snapshot name {name!r} ({api_reason(exc)}): "
                                      "name the backup otherwise, or leave the name out for a dated one.") from None
            raise
        snapshot = self._wait_for(repository, name)
        if snapshot["state"] != "SUCCESS":
            failures: list[dict[str, Any]] = snapshot.get("failures") or [{}]
            failure = failures[0].get("reason", snapshot.get("reason", ""))
            raise StoreError(f"The snapshot {name} in {repository} ended {snapshot['state']} ({failure}): check the "
                             "repository's storage, then run the backup again.")
        held = ", ".join(f"{self.parts[part]} ({index}, {counts[part]:,} documents)" for part, index in indices.items())
        return [f"{name}: snapshot in the repository {repository} of {held} in {time.monotonic() - started:.1f} s "
                f"(findimage {__version__}, index schema {SCHEMA_VERSION}); restore it with `findimage restore {name}`"]

    def _wait_for(self, repository: str, name: str) -> dict[str, Any]:
        """The snapshot once it ended (each request short, however long the snapshot takes)."""
        while True:
            snapshot = self.client.snapshot.get(repository=repository, snapshot=name)["snapshots"][0]
            if snapshot["state"] not in ("IN_PROGRESS", "STARTED", "INIT"):
                return snapshot
            time.sleep(POLL_SECONDS)

    # ---- restore ------------------------------------------------------------------------------
    @unavailable_on_connection_errors
    def restore(self, source: str, force: bool = False) -> list[str]:
        try:
            return self._restore(source, force)
        finally:
            self.client.close()

    def _restore(self, source: str, force: bool) -> list[str]:
        self._may("manage", "restore snapshots (the `manage` cluster privilege, which Elasticsearch has in no "
                  "narrower form): restore as the elastic user (ELASTICSEARCH_USERNAME=elastic and its "
                  "ELASTICSEARCH_PASSWORD)")
        repository = self._repository()
        snapshot = self._snapshot(repository, source)
        meta = snapshot["metadata"]
        lease = LeaseDocument(self.client, self.alias, self.settings.lease_seconds)
        try:
            lease.acquire()
        except LeaseHeld as exc:
            raise SnapshotRefused(f"{exc} Restore once it is done, or stop the indexer first.") from None
        restored: dict[str, str] = {}
        try:
            parts = [part for part in self.parts if part in meta["indices"]]  # in one order, whatever the metadata's
            replaced = {part: self._live(self.parts[part]) for part in parts}
            holding = {part: n for part, live in replaced.items() if (n := sum(map(self._count, live)))}
            if holding and not force:
                held = ", ".join(f"{self.parts[part]} {n:,}" for part, n in holding.items())
                raise SnapshotRefused(f"Elasticsearch already holds documents ({held}): add --force to replace them "
                                      f"(the index of {self.alias} is kept as the rollback copy; the remembered "
                                      "channels' indices are deleted).")
            try:
                for part in parts:
                    restored[part] = self._restore_index(repository, source, meta["indices"][part], self.parts[part])
                self._swap(restored, replaced)
            except BaseException:
                for index in restored.values():  # never swapped in: nothing half-restored stays behind
                    self.client.indices.delete(index=index, ignore_unavailable=True)
                raise
            self._drop_replaced(replaced)
        finally:
            lease.release()
        return self._said(source, meta, restored, replaced)

    def _snapshot(self, repository: str, name: str) -> dict[str, Any]:
        """The snapshot `name`, checked: made by `findimage backup` with every index it names, completely,
        and of a schema this release knows."""
        try:
            snapshot = self.client.snapshot.get(repository=repository, snapshot=name)["snapshots"][0]
        except NotFoundError:
            raise SnapshotRefused(f"There is no snapshot {name} in the repository {repository}: `findimage backup` "
                                  f"prints the names it makes (GET _snapshot/{repository}/_all lists them).") from None
        meta = snapshot.get("metadata") or {}
        indices, counts = meta.get("indices"), meta.get("counts")
        if not (isinstance(indices, dict) and ARCHIVE in indices and isinstance(counts, dict)
                and set(indices) <= set(self.parts) and set(indices) <= set(counts)):
            raise SnapshotRefused(f"The snapshot {name} was not made by `findimage backup`: nothing was restored.")
        refuse_newer_schema(f"The snapshot {name}", meta.get("findimage"), int(meta.get("schema", 0)), SCHEMA_VERSION)
        if snapshot["state"] != "SUCCESS" or not set(indices.values()) <= set(snapshot.get("indices", [])):
            raise SnapshotRefused(f"The snapshot {name} is incomplete ({snapshot['state']}): nothing was restored; "
                                  "restore another one.")
        return snapshot

    def _restore_index(self, repository: str, snapshot: str, index: str, name: str) -> str:
        """`index` of the snapshot restored as the next generation of `name`, waited for; its name."""
        numbers = [generation_number(name, i) for i in self.client.indices.get(
            index=generations_pattern(name), expand_wildcards="open,closed", allow_no_indices=True,
            ignore_unavailable=True)]
        target = generation(name, max((n for n in numbers if n is not None), default=0) + 1)
        self.client.snapshot.restore(repository=repository, snapshot=snapshot, indices=index,
                                     rename_pattern=f"^{re.escape(index)}$", rename_replacement=target,
                                     include_aliases=False, include_global_state=False, wait_for_completion=False)
        while True:  # primaries active = recovered from the snapshot; each wait short
            health = self.client.cluster.health(index=target, wait_for_status="yellow", timeout="30s")
            if not health["timed_out"]:
                break
            if health["status"] == "red" and not health["initializing_shards"] and health["unassigned_shards"]:
                raise StoreError(f"Elasticsearch could not restore {index} from the snapshot {snapshot} (its shards "
                                 "stay unassigned): see GET _cluster/allocation/explain.")
        self.client.indices.refresh(index=target)
        return target

    def _swap(self, restored: dict[str, str], replaced: dict[str, list[str]]) -> None:
        """Every alias onto its restored index, in one request."""
        actions: list[dict[str, Any]] = []
        for part, index in restored.items():
            name = self.parts[part]
            for old in replaced[part]:
                # An index bearing the alias's own name (`<alias>-channels` before its first restore) makes way.
                actions.append({"remove_index": {"index": old}} if old == name
                               else {"remove": {"index": old, "alias": name}})
            actions.append({"add": {"index": index, "alias": name}})
        self.client.indices.update_aliases(actions=actions)

    def _drop_replaced(self, replaced: dict[str, list[str]]) -> None:
        """The remembered channels' replaced indices deleted, and an empty archive index (one a pass made
        finding nothing); the archive's other one stays as the rollback copy."""
        for part, old_indices in replaced.items():
            for old in old_indices:
                if old != self.parts[part] and (part != ARCHIVE or not self._count(old)):
                    self.client.indices.delete(index=old, ignore_unavailable=True)

    def _said(self, source: str, meta: dict, restored: dict[str, str], replaced: dict[str, list[str]]) -> list[str]:
        lines = [f"restored the snapshot {source} (made {meta.get('made_at')} by findimage {meta.get('findimage')}): "
                 + ", ".join(f"{self.parts[p]} -> {i} ({self._count(i):,} documents)" for p, i in restored.items())]
        kept = [old for old in replaced.get(ARCHIVE, []) if old != self.alias and self.client.indices.exists(index=old)]
        for old in kept:
            back = {"actions": [{"add": {"index": old, "alias": self.alias}},
                                {"remove": {"index": restored[ARCHIVE], "alias": self.alias}}]}
            lines.append(f"kept {old} as the rollback copy (the next `findimage index --full` deletes it); back to it "
                         f"with POST _aliases {json.dumps(back, separators=(',', ':'))}")
        return lines

    # ---- shared -------------------------------------------------------------------------------
    def _repository(self) -> str:
        repository = self.settings.es_snapshot_repository
        if not repository:
            raise SnapshotRefused("Set FINDIMAGE_ES_SNAPSHOT_REPOSITORY to the snapshot repository registered in "
                                  "Elasticsearch that backups go to (docs/elasticsearch.md#backups).")
        try:
            self.client.snapshot.get_repository(name=repository)
        except NotFoundError:
            raise SnapshotRefused(f"Elasticsearch at {self.url} has no snapshot repository {repository} "
                                  f"(FINDIMAGE_ES_SNAPSHOT_REPOSITORY): register it first "
                                  f"(PUT _snapshot/{repository}).") from None
        return repository

    def _may(self, privilege: str, what: str) -> None:
        """SnapshotRefused unless these credentials hold the cluster `privilege` (all do with security off)."""
        try:
            found = self.client.security.has_privileges(cluster=[privilege]).body
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise
            return  # security is off: everything is allowed
        if not found.get("has_all_requested"):
            raise SnapshotRefused(f"Elasticsearch at {self.url} does not allow these credentials to {what}.")

    def _live(self, name: str) -> list[str]:
        """The concrete indices behind `name` (an alias, or an index of that name); none if neither."""
        try:
            return sorted(self.client.indices.get_alias(name=name))
        except NotFoundError:
            return [name] if self.client.indices.exists(index=name) else []

    def _count(self, index: str) -> int:
        return int(self.client.count(index=index)["count"])

    def _documents(self, index: str) -> int:
        return int(self.client.indices.stats(index=index, metric="docs")["_all"]["primaries"]["docs"]["count"])

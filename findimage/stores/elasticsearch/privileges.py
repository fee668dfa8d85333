"""Least-privilege Elasticsearch API keys: what the bot and the indexer may do, in one place.

The bot searches: it reads the alias's indices and runs the deployed text model; its only writes are
the keys of answered Slack events in `<alias>-seen`, shared by its replicas, and the images remembered
from channels (`<alias>-remembered` over its own generations, and `<alias>-channels`), which it owns.
The indexer owns the archive's indices: it creates, writes, swaps and deletes `<alias>-v<N>`, holds
the indexing lease in `<alias>-lease` and reads cluster health for `findimage status`. The backup key
snapshots findimage's indices into registered repositories (snapshots.py). None may touch any other
index, user, role or model. `findimage doctor` asks which of the bot's and the indexer's the
credentials in use may run (`checkup`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from elasticsearch import ApiError, AuthenticationException, ConnectionError, ConnectionTimeout, Elasticsearch

from findimage.config import ElasticsearchSettings, public_url
from findimage.errors import AccessDenied
from findimage.stores.base import ServerCheckup
from findimage.stores.elasticsearch.client import (
    BUSY_STATUSES,
    access_denied,
    api_reason,
    make_client,
    unavailable_error,
)
from findimage.stores.elasticsearch.names import (
    channels_index,
    generations_pattern,
    lease_index,
    remembered_alias,
    seen_index,
)

ROLES = ("bot", "indexer", "backup")
RUNNING = ("bot", "indexer")  # the roles a deployment's processes run as (`findimage doctor` asks for these)
USES = {"bot": "the bot (`findimage bot`, `findimage search`): searches the index, runs the text model",
        "indexer": "the indexer (`findimage index`, `schedule`, `status`): creates, writes and rebuilds the index",
        "backup": "backups (`findimage backup`): snapshots of findimage's indices into registered repositories"}


class SecurityOff(Exception):
    """The cluster runs without security: there are no API keys to make (and none needed)."""


def index_names(alias: str) -> list[str]:
    """The alias and its concrete indices, and nothing else that happens to share the prefix."""
    return [alias, generations_pattern(alias)]


def bot_role(alias: str) -> dict:
    # monitor_ml covers reading trained models, their stats and `_infer`; it cannot create, start or
    # delete a model (Elasticsearch has no per-model privilege). On the seen keys: create a key (`index`
    # includes create-only writes; it also re-takes an expired key), read one, purge old ones.
    return {"cluster": ["monitor_ml"],
            "indices": [{"names": index_names(alias), "privileges": ["read", "view_index_metadata"]},
                        {"names": [seen_index(alias)], "privileges": ["create_index", "index", "read", "delete"]},
                        # What it remembers from channels: created, written and deleted (forget) by the bot.
                        {"names": [*index_names(remembered_alias(alias)), channels_index(alias)],
                         "privileges": ["create_index", "write", "delete_index", "manage", "read",
                                        "view_index_metadata"]}]}


def indexer_role(alias: str) -> dict:
    # Only the two cluster actions `findimage status` uses (server version, cluster health): the named
    # `monitor` privilege would also let it run ML models and read every index's stats.
    return {"cluster": ["cluster:monitor/main", "cluster:monitor/health"],
            "indices": [{"names": index_names(alias),
                         "privileges": ["create_index", "write", "delete_index", "manage", "read",
                                        "view_index_metadata"]},
                        {"names": [lease_index(alias)], "privileges": ["create_index", "write", "read"]}]}


def backup_role(alias: str) -> dict:
    # Snapshots into the repositories the cluster's admin registered (create_snapshot also lists them and
    # their snapshots), of findimage's indices, which it may find and count (monitor: their statistics)
    # but neither read nor change. Restoring needs the `manage` cluster privilege, which Elasticsearch has
    # in no narrower form (it also allows registering a repository anywhere): the elastic user restores.
    channels = channels_index(alias)
    return {"cluster": ["create_snapshot"],
            "indices": [{"names": [*index_names(alias), *index_names(remembered_alias(alias)), channels,
                                   generations_pattern(channels)],
                         "privileges": ["monitor", "view_index_metadata"]}]}


def role_descriptors(role: str, alias: str) -> dict:
    roles = {"bot": bot_role, "indexer": indexer_role, "backup": backup_role}
    return {f"findimage-{role}": roles[role](alias)}


def key_name(role: str, alias: str) -> str:
    """Names the privileges too: a key made for other privileges (or another alias) is replaced."""
    digest = hashlib.sha256(json.dumps(role_descriptors(role, alias), sort_keys=True).encode()).hexdigest()[:8]
    return f"findimage-{role}-{alias}-{digest}"


def create_key(client: Elasticsearch, role: str, alias: str) -> str:
    """A new API key for `role` ("bot" or "indexer"), in the encoded form ELASTICSEARCH_API_KEY takes."""
    created = client.security.create_api_key(name=key_name(role, alias), role_descriptors=role_descriptors(role, alias),
                                             metadata={"application": "findimage", "role": role, "alias": alias})
    return created["encoded"]


def key_is_current(client: Elasticsearch, encoded: str, role: str, alias: str) -> bool:
    """The key still authenticates and was made for these privileges."""
    try:
        who = client.options(api_key=encoded).security.authenticate()
    except AuthenticationException:
        return False
    return (who.get("api_key") or {}).get("name") == key_name(role, alias)


def key_id(encoded: str) -> str | None:
    try:
        return base64.b64decode(encoded, validate=True).decode().split(":", 1)[0]
    except ValueError:
        return None


def ensure_key_file(client: Elasticsearch, path: Path, role: str, alias: str) -> bool:
    """Keep the key in `path` if it is still current, else create one there (and invalidate the old one).

    Returns whether a new key was written. The file is readable by its owner only.
    """
    old = path.read_text().strip() if path.is_file() else ""
    if old and key_is_current(client, old, role, alias):
        return False
    encoded = create_key(client, role, alias)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encoded + "\n")
    os.replace(tmp, path)
    old_id = key_id(old) if old else None
    if old_id:
        client.security.invalidate_api_key(ids=[old_id])
    return True


def make_keys(settings: ElasticsearchSettings, key_files: dict[str, str | None]) -> list[str]:
    """The keys, made with the configured (superuser) credentials; lines to show the operator.

    A role with a file keeps a still-current key there; a role without one gets a new key, printed in
    the form a `.env` takes. The backup key is made only with its file, or where no role has one.
    """
    client, url = make_client(settings), public_url(settings.elasticsearch_url)
    lines = []
    try:
        try:
            client.security.authenticate()
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise
            raise SecurityOff(f"Elasticsearch at {url} runs without security, so it has no API keys: findimage "
                              "needs none there.") from None
        for role in ROLES:
            path = key_files.get(role)
            if role == "backup" and not path and any(key_files.values()):
                continue  # asked for the others' files only (compose's one-shot service, whose output is a log)
            if path:
                written = ensure_key_file(client, Path(path), role, settings.index_name)
                lines.append(f"{role}: {'new key written to' if written else 'key still valid in'} {path}")
            else:
                lines += [f"# {USES[role]}", f"ELASTICSEARCH_API_KEY={create_key(client, role, settings.index_name)}"]
    except (ConnectionError, ConnectionTimeout) as exc:
        raise unavailable_error(url, exc) from None
    except ApiError as exc:
        if exc.meta.status == 403:
            raise AccessDenied(f"Elasticsearch at {url} does not allow these credentials to create API keys (403): "
                               "run this as the elastic user (ELASTICSEARCH_USERNAME=elastic and its "
                               "ELASTICSEARCH_PASSWORD).") from None
        if exc.meta.status == 401:
            raise access_denied(url, 401) from None
        raise RuntimeError(f"Elasticsearch at {url} could not create the API keys: {api_reason(exc)}") from None
    finally:
        client.close()
    return lines


def checkup(settings: ElasticsearchSettings) -> ServerCheckup:
    """The server's version and license (where these credentials may read them) and, for the bot and the
    indexer, the privileges of their keys that the credentials in use lack (`has_privileges`)."""
    client, url = make_client(settings), public_url(settings.elasticsearch_url)
    try:
        try:
            client.security.authenticate()
        except ApiError as exc:
            if exc.meta.status in (*BUSY_STATUSES, 401, 403):
                raise
            security = False  # as in make_keys: any other refusal of this call means security is off
        else:
            security = True
        version = _unless_refused(lambda: str(client.info()["version"]["number"]))
        license = _unless_refused(lambda: "{type}, {status}".format(**client.license.get()["license"]))
        missing = {role: _lacking(client, role_descriptors(role, settings.index_name)[f"findimage-{role}"])
                   for role in RUNNING} if security else {role: [] for role in RUNNING}
        return ServerCheckup(version, license, security, missing)
    except (ConnectionError, ConnectionTimeout) as exc:
        raise unavailable_error(url, exc) from None
    except ApiError as exc:
        if exc.meta.status in (*BUSY_STATUSES, 401, 403):
            raise unavailable_error(url, exc) from None
        raise
    finally:
        client.close()


def _unless_refused(read: Callable[[], str]) -> str | None:
    """What `read` returns, or None where these credentials may not read it (403)."""
    try:
        return read()
    except ApiError as exc:
        if exc.meta.status == 403:
            return None
        raise


def _lacking(client: Elasticsearch, role: dict) -> list[str]:
    """The role's privileges the credentials in use do not hold: "<privilege>" for the cluster's,
    "<privilege> on <index>" for an index's."""
    held = client.security.has_privileges(
        cluster=role["cluster"], index=[{"names": e["names"], "privileges": e["privileges"]} for e in role["indices"]])
    return ([name for name, has in held["cluster"].items() if not has]
            + [f"{name} on {index}" for index, privileges in held["index"].items()
               for name, has in privileges.items() if not has])

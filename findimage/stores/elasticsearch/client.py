"""The Elasticsearch client as findimage uses it: built from settings, its failures in one sentence."""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from elastic_transport.client_utils import create_user_agent
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch, NotFoundError, __versionstr__

from findimage import USER_AGENT
from findimage.config import ConfigError, ElasticsearchSettings, public_url, unreadable_url
from findimage.errors import AccessDenied, BackendBusy, BackendUnavailable

# Statuses that mean "the cluster cannot serve this right now" (starting, restarting, overloaded).
BUSY_STATUSES = (429, 502, 503, 504)



# What a refused action was trying to do, by the prefix of its Elasticsearch action name.
ACTIONS = (("indices:admin/create", "create the index"), ("indices:admin/delete", "delete an index"),
           ("indices:admin/aliases", "move the alias"), ("indices:admin/mapping", "change the index's metadata"),
           ("indices:data/write", "write to the index"), ("indices:", "read the index"),
           ("cluster:monitor/xpack/ml", "use the text model"), ("cluster:", "read the cluster's state"))
KEYS_HINT = ("the indexer needs the indexer's API key and the bot the bot's (`findimage keys create` makes "
             "both); check ELASTICSEARCH_API_KEY.")


def access_denied(url: str | None, status: int = 403, reason: str = "", what: str | None = None) -> AccessDenied:
    """One sentence for credentials Elasticsearch refuses (401) or that may not do this (403)."""
    url = public_url(url)
    if status == 401:
        return AccessDenied(f"Elasticsearch at {url} refused the credentials (401): check ELASTICSEARCH_API_KEY or "
                            "ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD.")
    if what is None:
        action = re.search(r"action \[([^\]]+)\]", reason)
        # No action named: a HEAD request (an existence check of the index), which has no body.
        what = next((text for prefix, text in ACTIONS if action and action.group(1).startswith(prefix)),
                    "read the index")
    return AccessDenied(f"Elasticsearch at {url} does not allow these credentials to {what} (403): {KEYS_HINT}")


def unavailable_error(url: str | None, exc: Exception) -> BackendUnavailable:
    """One sentence a user can act on for a server that cannot be reached or is not ready."""
    url = public_url(url)
    if isinstance(exc, ApiError):
        status = exc.meta.status
        if status in (401, 403):
            return access_denied(url, status, api_reason(exc))
        return BackendBusy(f"Elasticsearch at {url} is not ready to serve requests ({status}, "
                           f"{api_reason(exc)}): it is probably starting or overloaded.")
    return BackendUnavailable(f"Elasticsearch at {url} is not reachable ({_connection_reason(exc)}): check that "
                            "it is running and that ELASTICSEARCH_URL is right.")


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (("refused", "connection refused"), ("timed out", "timed out"),
                           ("Timeout", "timed out"), ("CERTIFICATE", "TLS certificate not trusted; set "
                            "ELASTICSEARCH_CA_CERTS"), ("SSL", "TLS error"), ("Name or service not known",
                            "unknown host"), ("nodename nor servname", "unknown host"),
                           ("Temporary failure in name resolution", "unknown host")):
        if needle in text:
            return reason
    return type(exc).__name__


def item_reason(result: dict[str, Any]) -> str:
    """A bulk item's error in one line: the reason and its cause, without the source excerpt ES quotes."""
    error = result.get("error") or {}
    if not isinstance(error, dict):
        return str(error)[:300] or f"status {result.get('status')}"
    parts: list[str] = []
    for part in (error.get("reason"), (error.get("caused_by") or {}).get("reason")):
        line = (part or "").split("\n")[0].strip()
        if line and not any(line in p for p in parts):
            parts.append(line)
    reason = ": ".join(parts) or error.get("type") or f"status {result.get('status')}"
    return reason if len(reason) <= 300 else reason[:299] + "…"


def error_type(exc: ApiError) -> str:
    error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
    return error.get("type", "") if isinstance(error, dict) else ""


def api_reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", {})
    reason = (error.get("reason") or error.get("type")) if isinstance(error, dict) else error
    return str(reason or exc.message)


class _HasUrl(Protocol):
    @property
    def url(self) -> str | None: ...


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_HasUrl)


def unavailable_on_connection_errors(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Connection trouble becomes BackendUnavailable with one sentence a user can act on."""

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (ConnectionError, ConnectionTimeout) as exc:
            raise unavailable_error(self.url, exc) from None
        except ApiError as exc:
            if exc.meta.status in (*BUSY_STATUSES, 401, 403):
                raise unavailable_error(self.url, exc) from None
            raise

    return wrapper


def index_dims(client: Elasticsearch, name: str) -> int | None:
    """Dims of `image_embedding` in the index (or alias) `name`; None if it does not exist."""
    try:
        found = client.indices.get_field_mapping(index=name, fields="image_embedding")
    except NotFoundError:
        return None
    for index in found.values():
        field = index.get("mappings", {}).get("image_embedding", {}).get("mapping", {}).get("image_embedding")
        if field and field.get("dims"):
            return int(field["dims"])
    return None


def user_agent() -> str:
    """findimage's token before the one the client would send alone (a given user-agent replaces it)."""
    return f"{USER_AGENT} {create_user_agent('elasticsearch-py', __versionstr__)}"


def make_client(settings: ElasticsearchSettings) -> Elasticsearch:
    # The transport logs every failed attempt as a warning with a traceback; findimage reports
    # unavailability itself in one sentence (BackendUnavailable), so only its errors are shown.
    transport_log = logging.getLogger("elastic_transport")
    if transport_log.level == logging.NOTSET:
        transport_log.setLevel(logging.ERROR)
    auth: dict[str, Any] = {}
    if settings.elasticsearch_api_key:
        auth["api_key"] = settings.elasticsearch_api_key
    elif settings.elasticsearch_username:
        auth["basic_auth"] = (settings.elasticsearch_username, settings.elasticsearch_password)
    if settings.elasticsearch_ca_certs:
        auth["ca_certs"] = str(settings.elasticsearch_ca_certs)
    try:
        return Elasticsearch(settings.elasticsearch_url, request_timeout=settings.es_timeout_seconds,
                             retry_on_timeout=True, max_retries=2, headers={"user-agent": user_agent()}, **auth)
    except ValueError:  # its message quotes the whole URL, credentials included
        raise ConfigError([unreadable_url("ELASTICSEARCH_URL", "https")]) from None

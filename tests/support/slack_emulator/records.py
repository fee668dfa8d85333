"""What the emulator saw, recorded for assertions made from a user's point of view.

Every record carries ``at``: a ``time.monotonic()`` reading taken when the
emulator received it, so tests can compare it with their own monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def visible_text(text: str | None, blocks: Any = None) -> str:
    """The text a user would read: ``text`` plus every text found in ``blocks``."""
    parts = [text] if text else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get("text")
            if isinstance(value, str):
                parts.append(value)
            for key, child in node.items():
                if key != "text" or not isinstance(child, str):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(blocks)
    return "\n".join(parts)


@dataclass(frozen=True)
class ApiCall:
    """One Web API request (rate-limited and failed ones included)."""

    method: str
    params: dict
    token: str | None
    status: int
    response: dict
    at: float
    headers: dict = field(default_factory=dict)  # the answer's headers (Retry-After of a 429, X-OAuth-Scopes)
    user_agent: str = ""  # the request's User-Agent: which client, and which findimage, called

    @property
    def retry_after(self) -> int | None:
        """Seconds a 429 asked the client to wait."""
        value = self.headers.get("Retry-After")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class Message:
    """A message posted by the app with chat.postMessage or chat.postEphemeral."""

    channel: str
    ts: str
    text: str | None
    blocks: list | None
    thread_ts: str | None
    ephemeral: bool
    user: str | None  # the only user who sees an ephemeral message
    params: dict
    at: float

    @property
    def visible_text(self) -> str:
        return visible_text(self.text, self.blocks)


@dataclass(frozen=True)
class UploadedFile:
    id: str
    name: str
    title: str
    mimetype: str
    content: bytes = field(repr=False)
    file: dict = field(repr=False)  # the Slack file object, as files.info answers it

    def __repr__(self) -> str:
        return f"UploadedFile({self.id!r}, {self.name!r}, {self.mimetype!r}, {len(self.content)} bytes)"


@dataclass(frozen=True)
class Upload:
    """Files the app shared with files.completeUploadExternal (one call, one record)."""

    files: tuple
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None
    ts: str | None  # ts of the file-share message, None when the files stay private
    at: float

    @property
    def names(self) -> list:
        return [f.name for f in self.files]

    @property
    def contents(self) -> list:
        return [f.content for f in self.files]

    @property
    def file_objects(self) -> list:
        return [f.file for f in self.files]


@dataclass(frozen=True)
class ResponsePost:
    """A POST to a response_url (what Bolt's ``respond()`` sends)."""

    url: str
    payload: dict
    channel_id: str | None
    user_id: str | None
    accepted: bool
    at: float
    ts: str | None = None  # the message ts Slack gave an accepted post (what a click on it refers to)

    @property
    def text(self) -> str | None:
        return self.payload.get("text")

    @property
    def blocks(self) -> list | None:
        return self.payload.get("blocks")

    @property
    def response_type(self) -> str:
        return self.payload.get("response_type") or "ephemeral"

    @property
    def ephemeral(self) -> bool:
        return self.response_type != "in_channel"

    @property
    def replace_original(self) -> bool:
        return bool(self.payload.get("replace_original"))

    @property
    def thread_ts(self) -> str | None:
        return self.payload.get("thread_ts")

    @property
    def visible_text(self) -> str:
        return visible_text(self.text, self.blocks)


@dataclass(frozen=True)
class PublishedView:
    """A Home tab the app published with views.publish."""

    user_id: str
    view: dict
    view_id: str
    hash: str
    at: float

    @property
    def blocks(self) -> list:
        return self.view.get("blocks") or []

    @property
    def visible_text(self) -> str:
        return visible_text(None, self.blocks)


@dataclass(frozen=True)
class Download:
    """A GET of a hosted file (url_private, url_private_download or a thumbnail)."""

    file_id: str
    path: str
    authorized: bool  # False: the requester got the HTML login page
    bytes_sent: int
    complete: bool  # False: the client hung up before the end
    at: float


@dataclass(frozen=True)
class SocketAck:
    """The app's acknowledgement of a Socket Mode envelope."""

    envelope_id: str
    payload: dict | None  # the optional response payload sent along with the ack
    envelope: dict | None  # the envelope the emulator had sent
    sent_at: float | None
    at: float

    @property
    def elapsed(self) -> float | None:
        """Seconds between sending the envelope and receiving its ack."""
        return None if self.sent_at is None else self.at - self.sent_at


class Recorder:
    """Thread-safe store of records that test code can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lists: dict = {}
        self._version = 0

    def add(self, kind: str, record: Any) -> None:
        with self._cond:
            self._lists.setdefault(kind, []).append(record)
            self._version += 1
            self._cond.notify_all()

    def get(self, kind: str) -> list:
        with self._cond:
            return list(self._lists.get(kind, ()))

    def changed(self) -> None:
        """Wake up waiters after state that is not a record changed."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._lists.clear()

    def summary(self) -> str:
        with self._cond:
            counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(self._lists.items()))
            calls = [f"{c.method}->{c.status}:{c.response.get('error') or 'ok'}"
                     for c in self._lists.get("api_calls", [])[-8:]]
        return f"recorded: {counts or 'nothing'}; last API calls: {calls}"

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, what: str | None = None) -> T:
        """Return the first truthy value of ``predicate()``; fail the test after ``timeout`` seconds.

        Re-evaluates whenever something is recorded (and at least every 50 ms).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                version = self._version
            value = predicate()  # evaluated without holding our lock: it may take other locks
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                if self._version == version:
                    self._cond.wait(min(remaining, 0.05))
        label = what or getattr(predicate, "__name__", repr(predicate))
        raise AssertionError(f"timed out after {timeout}s waiting for {label}; {self.summary()}")

"""Seeding history cheaply: thousands of messages, some with images, in a channel's history without any event.

A seeded message has the shape of events/message.json (or, carrying a file, events/message_file_share.json)
without the fields the Events API adds, as ``history`` keeps every message.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from struct import pack

from .fixtures import fixture
from .history import EVENT_ONLY_KEYS


def tiny_png(index: int) -> bytes:
    """A 16x16 PNG of a colour of its own (distinct for the first 2**24 indexes), made without Pillow in a few
    microseconds (for seeding)."""
    rgb = ((index * 2654435761) & 0xFFFFFF).to_bytes(3, "big")  # an odd multiplier: a bijection on 24 bits
    raw = (b"\x00" + rgb * 16) * 16

    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class SeededHistory:
    """What ``seed_history`` created: the messages' ts, oldest first, and the ids of the files they carry."""

    channel: str
    ts: tuple
    file_ids: tuple


class SeedingMixin:
    def seed_history(self, channel: str, n_messages: int, *, files_every: int = 0, start_ts: float | None = None,
                     step: float = 1.0, user: str = "U0USER", text: str = "message {i}",
                     content: bytes | Callable[[int], bytes] | None = None, name: str = "seed-{i}.png",
                     ) -> SeededHistory:
        """Put ``n_messages`` messages of ``user`` into ``channel``'s history at once, sending no event.

        Message ``i`` (0 = oldest) has ts ``start_ts + i * step`` (default: ending now); every ``files_every``-th
        one (i = files_every - 1, 2 * files_every - 1, ...) is a file_share carrying one image, ``content`` (the
        same bytes each time) or ``content(i)``; by default a 16x16 PNG of a colour of its own, made without
        Pillow. Fast enough for 10,000 messages."""
        start = time.time() - n_messages * step if start_ts is None else float(start_ts)
        said = fixture("events/message")["event"]
        shared = fixture("events/message_file_share")["event"]
        for key in EVENT_ONLY_KEYS:
            said.pop(key)
            shared.pop(key)
        team = self.user_team(user)
        said.update(user=user, team=team)
        shared.update(user=user)
        from .driver import _rich_text

        stamps, file_ids = [], []
        for i in range(n_messages):
            ts = f"{start + i * step:.6f}"
            words = text.format(i=i)
            if files_every and (i + 1) % files_every == 0:
                data = content(i) if callable(content) else content if content is not None else tiny_png(i)
                stored = self._store_file(data, name.format(i=i), user=user)
                stored["created"] = int(start + i * step)
                self._share_file(stored, channel, ts, None)
                message = dict(shared, text=words, files=[{"id": stored["id"]}], ts=ts, blocks=_rich_text(words),
                               client_msg_id=str(uuid.uuid4()))
                file_ids.append(stored["id"])
            else:
                message = dict(said, client_msg_id=str(uuid.uuid4()), text=words, ts=ts, blocks=_rich_text(words))
            self._remember(channel, message, copy=False)
            stamps.append(ts)
        with self._lock:
            self._authors.update((ts, user) for ts in stamps)
            if stamps:
                self._last_ts = max(self._last_ts, float(stamps[-1]))
        return SeededHistory(channel, tuple(stamps), tuple(file_ids))

"""The remembered channels and their postings, in a SQLite file beside the channels' own embedded store
(findimage.remembered): one bot process writes it, `findimage search --channel` reads it. A dropped
posting's title and permalink leave the file too (erasing.py), as its image leaves the store."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from findimage.records import Posted
from findimage.stores.base import ChannelState, Pending
from findimage.stores.embedded.erasing import empty_wal, zero_deleted_content
from findimage.stores.embedded.schema import CHANNELS_TABLES, connect, create, in_chunks

_COLUMNS = "channel, file_id, message_ts, poster, permalink, title"


class EmbeddedRegistry:
    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / "channels.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect(self.path)
        zero_deleted_content(self._db)
        create(self._db, CHANNELS_TABLES)

    def channel(self, channel: str) -> ChannelState | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM channels WHERE channel=?", (channel,)).fetchone()
        return ChannelState.of_json(json.loads(row[0])) if row else None

    def channels(self) -> list[ChannelState]:
        with self._lock:
            rows = self._db.execute("SELECT state FROM channels ORDER BY channel").fetchall()
        return [ChannelState.of_json(json.loads(r[0])) for r in rows]

    def save_channel(self, state: ChannelState) -> None:
        with self._lock:
            self._db.execute("INSERT INTO channels(channel, state) VALUES(?, ?) ON CONFLICT(channel) DO UPDATE "
                             "SET state=excluded.state", (state.channel, json.dumps(state.as_json())))

    def update_channel(self, state: ChannelState) -> bool:
        with self._lock:
            return self._db.execute("UPDATE channels SET state=? WHERE channel=?",
                                    (json.dumps(state.as_json()), state.channel)).rowcount == 1

    def drop_channel(self, channel: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM channels WHERE channel=?", (channel,))
                self._db.execute("DELETE FROM posted WHERE channel=?", (channel,))
            finally:
                self._db.execute("COMMIT")
            empty_wal(self._db, str(self.path))

    def erase_all(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table in ("channels", "posted", "journal", "gone"):
                    self._db.execute(f"DELETE FROM {table}")  # noqa: S608 (the tables above)
            finally:
                self._db.execute("COMMIT")
            empty_wal(self._db, str(self.path))

    def add_posted(self, posted: Sequence[Posted]) -> None:
        with self._lock:
            self._db.executemany(
                f"INSERT OR REPLACE INTO posted(image_id, {_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?)",
                [(p.image_id, p.channel, p.file_id, p.message_ts, p.poster, p.permalink, p.title) for p in posted])

    def posted(self, image_ids: Iterable[str]) -> dict[str, Posted]:
        found: dict[str, Posted] = {}
        with self._lock:
            for chunk in in_chunks(list(image_ids), 500):
                rows = self._db.execute(f"SELECT image_id, {_COLUMNS} FROM posted WHERE image_id IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
                found.update((r[0], Posted(*r[1:])) for r in rows)
        return found

    def posted_in(self, channel: str) -> list[Posted]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM posted WHERE channel=?", (channel,)).fetchall()
        return [Posted(*r) for r in rows]

    def posted_as(self, file_id: str) -> list[Posted]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM posted WHERE file_id=?", (file_id,)).fetchall()
        return [Posted(*r) for r in rows]

    def drop_posted(self, image_ids: Iterable[str]) -> None:
        with self._lock:
            for chunk in in_chunks(list(image_ids), 500):
                self._db.execute(f"DELETE FROM posted WHERE image_id IN ({','.join('?' * len(chunk))})", chunk)
            empty_wal(self._db, str(self.path))

    def keep(self, entries: Sequence[Pending]) -> None:
        with self._lock:  # a commit per call (autocommit): durable against a killed process (WAL)
            self._db.executemany("INSERT OR IGNORE INTO journal(id, lane, received, entry) VALUES(?, ?, ?, ?)",
                                 [(e.id, e.lane, e.received, json.dumps(e.as_json())) for e in entries])

    def take(self, lane: str, limit: int, worker: str, now: float, hold_seconds: float) -> list[Pending]:
        taken = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT entry FROM journal WHERE lane=? AND (worker_until<=? OR worker=?) "
                                        "ORDER BY received, id LIMIT ?", (lane, now, worker, limit)).fetchall()
                for (raw,) in rows:
                    entry = Pending.of_json(json.loads(raw))
                    entry.attempts += 1
                    entry.worker, entry.worker_until = worker, now + hold_seconds
                    self._db.execute("UPDATE journal SET entry=?, worker=?, worker_until=? WHERE id=?",
                                     (json.dumps(entry.as_json()), worker, entry.worker_until, entry.id))
                    taken.append(entry)
            finally:
                self._db.execute("COMMIT")
        return taken

    def settle(self, ids: Iterable[str]) -> None:
        with self._lock:
            for chunk in in_chunks(list(ids), 500):
                self._db.execute(f"DELETE FROM journal WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def backlog(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT lane, COUNT(*) FROM journal GROUP BY lane").fetchall())

    def mark_gone(self, file_ids: Iterable[str], now: float, keep_seconds: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM gone WHERE until<=?", (now,))  # the lapsed ones
            self._db.executemany("INSERT OR REPLACE INTO gone(file_id, until) VALUES(?, ?)",
                                 [(f, now + keep_seconds) for f in file_ids])

    def gone(self, file_ids: Iterable[str], now: float) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for chunk in in_chunks(list(file_ids), 500):
                rows = self._db.execute(f"SELECT file_id FROM gone WHERE until>? AND file_id IN "
                                        f"({','.join('?' * len(chunk))})", [now, *chunk]).fetchall()
                found.update(r[0] for r in rows)
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""What the indexer remembers between passes besides the store: files that failed, and a refused removal.

Kept as one small JSON file in the data folder (beside the pass lock), replaced atomically, so a
crash mid-write leaves the previous version. Losing it costs one re-read of the bad files, nothing more.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
STATE_FILE = "indexer-state.json"


@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed, remembered with what it looked like so it is retried only when it changes."""

    size: int
    mtime: float
    reason: str


@dataclass
class PendingRemoval:
    """A removal the indexer refused because it would empty too much of the index."""

    count: int
    indexed: int
    refused_at: float
    examples: list[str] = field(default_factory=list)


@dataclass
class IndexerState:
    failed: dict[str, FailedFile] = field(default_factory=dict)
    pending_removal: PendingRemoval | None = None

    def known_failure(self, relative_path: str, size: int, mtime: float) -> FailedFile | None:
        failed = self.failed.get(relative_path)
        return failed if failed and failed.size == size and failed.mtime == mtime else None


def state_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / STATE_FILE


def load_state(data_dir: str | Path) -> IndexerState:
    path = state_path(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        failed = {p: FailedFile(**f) for p, f in raw.get("failed", {}).items()}
        pending = raw.get("pending_removal")
        return IndexerState(failed, PendingRemoval(**pending) if pending else None)
    except FileNotFoundError:
        return IndexerState()
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # unreadable or another shape: start
        # afresh; the bad files are read once more
        log.warning("ignoring %s (%s)", path, exc)
        return IndexerState()


def save_state(data_dir: str | Path, state: IndexerState) -> None:
    """Replace the state file atomically; on failure (disk full) the old one stays and no temp file is left."""
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"failed": {p: asdict(f) for p, f in sorted(state.failed.items())},
            "pending_removal": asdict(state.pending_removal) if state.pending_removal else None}
    fd, tmp = tempfile.mkstemp(prefix=STATE_FILE + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

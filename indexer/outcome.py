"""What became of one file in a pass: made by the embedding (indexer/embedding.py) and its text
(indexer/text_stage.py), sent back by a queue's workers as JSON (indexer/queue.py), counted by the pass
(indexer/index_pass.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What became of one file: stored with this content, or failed (why)."""

    relative_path: str
    sha256: str = ""
    error: str | None = None
    embedded: bool = False  # the model ran for it (not a vector reused from the index or this run)
    # Failed because the store refused its document (a mapping, an ingest pipeline), not because of the file:
    # tried again on the next pass, changed or not.
    rejected_by_store: bool = False
    # What became of its text beside the embedding: "read", "failed", "timed_out", "reused" (a copy of content
    # read in the same batch), or "" (left to the pass's text stage).
    text: str = ""

    def as_json(self) -> dict:
        return {"relative_path": self.relative_path, "sha256": self.sha256, "error": self.error,
                "embedded": self.embedded, "rejected_by_store": self.rejected_by_store, "text": self.text}

    @classmethod
    def of_json(cls, value: dict) -> Outcome:
        return cls(value["relative_path"], value.get("sha256") or "", value.get("error"), bool(value.get("embedded")),
                   bool(value.get("rejected_by_store")), str(value.get("text") or ""))

"""Benchmarks that print numbers (docs/performance.md says how each is run)."""
from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(kind: str, result: dict) -> Path:
    """benchmarks/results/<kind>-<time>.json, the run's figures as printed."""
    out = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out

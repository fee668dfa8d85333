"""What a forget must not leave on disk: words (as typed and as the stores fold them) and vectors, looked
for byte by byte in every file below a folder."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from findimage.names import name_words
from findimage.stores.text import line_words


def needles(words: Iterable[str], vectors: Iterable[np.ndarray] = ()) -> dict[str, bytes]:
    """Each word as typed (UTF-8) and as the full-text indexes keep it (folded lowercase, as path words and
    as read text); each vector's float32 bytes, whole and its first 16 numbers alone."""
    found = {}
    for word in words:
        found[word] = word.encode()
        for folded in {*name_words(word).split(), *line_words(word).split()} - {word}:
            if len(folded) > 3:  # "F0SECRETQX" is "0 secretqx" as a path's words: the "0" is everywhere
                found[f"{word} as {folded!r}"] = folded.encode()
    for number, vector in enumerate(vectors):
        vector = np.asarray(vector, dtype=np.float32)
        found[f"vector {number}"] = vector.tobytes()
        found[f"vector {number}'s first numbers"] = vector[:16].tobytes()
    return found


def found_in_files(folder: Path, wanted: dict[str, bytes]) -> list[str]:
    """Every "file: needle" where the needle's bytes occur, over every file below `folder` (-wal, -shm too)."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {label}" for label, needle in wanted.items() if needle in data]
    return found

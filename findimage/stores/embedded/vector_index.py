"""In-memory approximate kNN over the embedded store's vectors (a derived cache; SQLite is the truth).

Small collections use an exact inner-product index (float32). From IVF_MIN_VECTORS on, an IVF index
with 8-bit scalar-quantized vectors keeps memory near 0.5 GB per million vectors; its candidates are
re-ranked exactly by the store, so quantization only affects which candidates are found.

Tuning (benchmarks/run.py --million, clustered CLIP-like vectors, half of the queries text-like):
~4*sqrt(n) lists and 1/8 of them probed give recall@10 0.99 at 1M vectors in ~10 ms of faiss time on
one core; 1/16 gives 0.985 overall but only 0.97 for text-like queries, which sit far from every image.
"""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

IVF_MIN_VECTORS = 50_000
TRAIN_SAMPLE = 100_000  # at least; and ~50 points per list, so k-means has enough to place each centroid
TRAIN_POINTS_PER_LIST = 50


SNAPSHOT_NAME = re.compile(r"vectors-[0-9a-f]{12}\.faiss")


def wanted_kind(count: int) -> str:
    return "ivf" if count >= IVF_MIN_VECTORS else "flat"


def _nlist_for(count: int) -> int:
    # ~4*sqrt(n) lists, a power of two: 4096 lists at 1M vectors (~250 per list).
    return int(2 ** round(math.log2(max(64.0, 4 * math.sqrt(count)))))


@dataclass
class VectorIndex:
    index: faiss.Index
    kind: str
    version: int = 0
    generation: str = ""

    @classmethod
    def empty(cls, dims: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dims)), "flat")

    @classmethod
    def build(cls, slots: np.ndarray, vectors: np.ndarray, version: int) -> VectorIndex:
        """An index over vectors already in memory (small collections, tests)."""
        sample = vectors[sample_positions(len(slots))] if wanted_kind(len(slots)) == "ivf" else None
        return cls.build_from(len(slots), sample, [(slots, vectors)], version, vectors.shape[1])

    @classmethod
    def build_from(cls, count: int, sample: np.ndarray | None, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                   version: int, dims: int) -> VectorIndex:
        """An index for `count` vectors that arrive in chunks of (slots, vectors), trained on `sample`
        (see sample_positions) when it is an IVF index: memory stays at the index plus one chunk and the
        sample (~1.2 GB at 1M vectors) instead of every vector at once."""
        if wanted_kind(count) == "flat":
            built = cls.empty(dims)
        else:
            nlist = _nlist_for(count)
            quantizer = faiss.IndexFlatIP(dims)
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, dims, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
            ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
            ivf.nprobe = default_nprobe(nlist)
            built = cls(ivf, "ivf")
        for slots, vectors in chunks:
            built.add(slots, vectors)
        built.version = version
        return built

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dims(self) -> int:
        return int(self.index.d)

    @property
    def ivf(self) -> faiss.IndexIVF:
        """The index as the IVF index it is when `kind` is "ivf" (faiss reads indexes back as their own class)."""
        if not isinstance(self.index, faiss.IndexIVF):
            raise TypeError(f"a {self.kind} kNN index has no inverted lists")
        return self.index

    def outgrown(self) -> bool:
        """An IVF index trained when the collection was much smaller: rebuilding it (more lists) keeps
        recall and latency where the tuning put them. Shrinking never asks for a rebuild."""
        return self.kind == "ivf" and _nlist_for(len(self)) >= 2 * self.ivf.nlist

    def memory_bytes(self) -> int:
        """What the index holds in memory (vectors or codes, ids, centroids), approximately."""
        n = len(self)
        if self.kind == "ivf":
            return n * (self.ivf.code_size + 8) + self.ivf.nlist * self.dims * 4
        return n * (self.dims * 4 + 8 + 16)  # float32 vectors, ids and IDMap2's reverse map

    def add(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        if len(slots):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), slots.astype(np.int64))

    def remove(self, slots: np.ndarray) -> None:
        if len(slots):
            self.index.remove_ids(faiss.IDSelectorBatch(slots.astype(np.int64)))

    def search(self, query: np.ndarray, n: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (similarities, slots) for one query, optionally only among `allowed` slots."""
        n = min(n, len(self))
        if n == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        params = None
        if allowed is not None or self.kind == "ivf":
            params = self._search_params(allowed)
        sims, slots = self.index.search(query.reshape(1, -1).astype(np.float32), n, params=params)
        keep = slots[0] >= 0
        return sims[0][keep], slots[0][keep]

    def _search_params(self, allowed: np.ndarray | None) -> faiss.SearchParameters:
        selector = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else None
        if self.kind == "flat":
            flat = faiss.SearchParameters()
            flat.sel = selector
            return flat
        nprobe = self.ivf.nprobe
        if allowed is not None:
            # A folder holding 1/m of the archive needs ~m times more lists to find enough of its images.
            nprobe = min(self.ivf.nlist, nprobe * math.ceil(len(self) / max(1, len(allowed))))
        params = faiss.SearchParametersIVF()
        params.sel, params.nprobe = selector, nprobe
        # keep the selector alive as long as the params (faiss does not own it)
        params._selector = selector  # type: ignore[attr-defined]  # an attribute of ours; the stubs list faiss's only
        return params

    # Snapshots: `vectors.json` names the index file of its generation, replaced atomically.
    def save(self, folder: Path) -> None:
        if self._snapshot_is_current(folder):
            return  # nothing changed since it was loaded or saved: at 1M vectors that spares 0.5 GB of writes
        generation = uuid.uuid4().hex[:12]
        index_file = folder / f"vectors-{generation}.faiss"
        index_tmp, pointer_tmp = Path(str(index_file) + ".tmp"), folder / "vectors.json.tmp"
        pointer = {"file": index_file.name, "kind": self.kind, "version": self.version, "count": len(self)}
        try:
            try:
                faiss.write_index(self.index, str(index_tmp))
            except RuntimeError as exc:  # faiss reports a failed write (disk full) as a RuntimeError
                raise OSError(f"writing {index_tmp.name} failed ({str(exc).strip().splitlines()[-1]})") from exc
            fsync_path(str(index_tmp))
            os.replace(index_tmp, index_file)
            pointer_tmp.write_text(json.dumps(pointer))
            fsync_path(str(pointer_tmp))
            os.replace(pointer_tmp, folder / "vectors.json")
        except BaseException:
            # Nothing half-written stays behind; the previous snapshot (if any) is still the current one.
            for leftover in (index_tmp, pointer_tmp):
                leftover.unlink(missing_ok=True)
            if not (folder / "vectors.json").is_file() or VectorIndex.snapshot_generation(folder) != index_file.name:
                index_file.unlink(missing_ok=True)
            raise
        self.generation = index_file.name
        for old in folder.glob("vectors-*.faiss*"):
            if old.name != index_file.name:
                old.unlink(missing_ok=True)

    def _snapshot_is_current(self, folder: Path) -> bool:
        pointer = VectorIndex.snapshot_info(folder)
        if pointer is None:
            return False
        return (bool(self.generation) and pointer.get("file") == self.generation
                and pointer.get("version") == self.version and pointer.get("count") == len(self)
                and (folder / self.generation).is_file())

    @classmethod
    def load(cls, folder: Path) -> VectorIndex | None:
        """The latest snapshot, or None if there is none or it is unreadable (the store then rebuilds)."""
        pointer = cls.snapshot_info(folder)
        if pointer is None:
            return None
        try:
            index = faiss.read_index(str(folder / pointer["file"]))
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        loaded = cls(index, pointer["kind"], int(pointer["version"]), pointer["file"])
        if loaded.kind == "ivf":
            loaded.ivf.nprobe = default_nprobe(loaded.ivf.nlist)
        return loaded

    @staticmethod
    def drop_snapshot(folder: Path) -> None:
        """No snapshot left in `folder` (the next process rebuilds the index from SQLite); the pointer
        first, so a process opening it meanwhile finds none rather than a file gone."""
        (folder / "vectors.json").unlink(missing_ok=True)
        for old in folder.glob("vectors-*.faiss*"):
            old.unlink(missing_ok=True)

    @staticmethod
    def snapshot_info(folder: Path) -> dict[str, Any] | None:
        """The snapshot pointer (file, kind, version, count), or None if there is no readable one.

        The file it names must be one this module writes (`vectors-<12 hex>.faiss`, in the data folder):
        a pointer edited to name another path is no snapshot, and the store rebuilds from SQLite."""
        try:
            pointer = json.loads((folder / "vectors.json").read_text())
        except (OSError, ValueError):
            return None
        if not (isinstance(pointer, dict) and isinstance(pointer.get("file"), str)
                and SNAPSHOT_NAME.fullmatch(pointer["file"]) and pointer.get("kind") in ("flat", "ivf")
                and isinstance(pointer.get("version"), int)):
            return None
        return pointer

    @staticmethod
    def snapshot_generation(folder: Path) -> str | None:
        info = VectorIndex.snapshot_info(folder)
        return info["file"] if info else None


def sample_positions(count: int) -> np.ndarray:
    """Which of `count` vectors (by position, sorted) train an IVF index: ~50 per list, at least 100k."""
    size = min(count, max(TRAIN_SAMPLE, TRAIN_POINTS_PER_LIST * _nlist_for(count)))
    return np.sort(np.random.default_rng(0).permutation(count)[:size])


def default_nprobe(nlist: int) -> int:
    return max(32, nlist // 8)


def fsync_path(path: str | Path) -> None:
    """The file's bytes on disk (before a rename makes it the current one)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

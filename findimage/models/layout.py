"""Models in immich's layout: where a model setting's files are, and what its config files say.

A setting names such a model as a local folder (`config.json`, open_clip's config, beside `visual/` and
`textual/`, each with a `model.onnx`) or as a model of immich's catalogue by its name
(`ViT-B-32-SigLIP2-256__webli`, or any `immich-app/<name>`), fetched from the Hugging Face hub into its
cache once, only the side a setting needs; `<name>@<revision>` pins a hub revision. The model id recorded
in the store says which weights made the vectors: `immich-app/<name>@<commit>` for the hub (the revision
resolved), `<folder>@<hash>` for a folder (its files' content).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from findimage.errors import ModelError
from findimage.models import catalogue

log = logging.getLogger(__name__)

HUB_OWNER = "immich-app"
Side = Literal["visual", "textual"]
SIDE_FILES: dict[Side, tuple[str, ...]] = {
    "visual": ("model.onnx", "preprocess_cfg.json"),
    "textual": ("model.onnx", "tokenizer.json", "tokenizer_config.json"),
}
_COMMIT = re.compile(r"[0-9a-f]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class LayoutModel:
    """Where a setting's immich-layout model comes from: a folder, or a hub repository (at a revision)."""

    setting: str
    folder: Path | None = None
    repo: str | None = None
    revision: str | None = None  # None: the hub's main branch

    def fingerprint(self) -> str:
        """The model id as the store records it, known without loading: a folder's content; the hub revision
        the setting pins, else the one in the local cache, else (not fetched yet) the repository alone."""
        if self.folder is not None:
            return folder_fingerprint(self.folder)
        assert self.repo is not None
        if self.revision and _COMMIT.fullmatch(self.revision):
            return f"{self.repo}@{self.revision}"
        commit = cached_commit(self.repo, self.revision)
        return f"{self.repo}@{commit}" if commit else self.repo


def layout_model(setting: str) -> LayoutModel | None:
    """The immich-layout model a model setting names, or None (a sentence-transformers model, the default)."""
    path = Path(setting).expanduser()
    if path.is_dir():
        return LayoutModel(setting, folder=path) if is_layout_folder(path) else None
    name, _, revision = setting.partition("@")
    owner, _, rest = name.rpartition("/")
    if owner == HUB_OWNER and _NAME.fullmatch(rest):
        name = rest
    elif owner or catalogue.find(name) is None:
        return None
    return LayoutModel(setting, repo=f"{HUB_OWNER}/{name}", revision=revision or None)


def is_layout_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / side / "model.onnx").is_file() for side in SIDE_FILES)


@dataclass(frozen=True)
class ModelFiles:
    """One side's files of a model on this machine, its config read, and the model id they make."""

    root: Path
    side: Side
    model_id: str
    config: dict[str, Any]

    @property
    def folder(self) -> Path:
        return self.root / self.side

    @property
    def dims(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def text_config(self) -> dict[str, Any]:
        text: dict[str, Any] = self.config.get("text_cfg") or {}
        return text

    def read_json(self, name: str) -> dict[str, Any]:
        return read_json(self.folder / name, self.model_id)


def model_files(model: LayoutModel, side: Side, setting_name: str) -> ModelFiles:
    """The files of `side`, fetched first where the model is on the hub; ModelError in one sentence where
    they cannot be had."""
    if model.folder is not None:
        root, model_id = model.folder, folder_fingerprint(model.folder)
    else:
        root = fetch(model, side, setting_name)
        assert model.repo is not None
        model_id = f"{model.repo}@{root.name}"  # the snapshot's folder is named after its commit
    missing = [f"{side}/{name}" for name in SIDE_FILES[side] if not (root / side / name).is_file()]
    if missing:
        raise ModelError(f"{setting_name}={model.setting} has no {' and no '.join(missing)}: it cannot serve "
                         f"as the {'image' if side == 'visual' else 'text'} model (a model in immich's layout "
                         f"has config.json, visual/ and textual/).")
    config = read_json(root / "config.json", model_id)
    if not isinstance(config.get("embed_dim"), int):
        raise ModelError(f"The model {model_id} has no vector size (embed_dim) in its config.json.")
    return ModelFiles(root, side, model_id, config)


def fetch(model: LayoutModel, side: Side, setting_name: str) -> Path:
    """The hub snapshot holding `side` (and config.json), downloaded into the Hugging Face cache unless
    there already (HF_HUB_OFFLINE=1: only from there)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        HTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    assert model.repo is not None
    try:
        # immich's own download leaves out the formats of other accelerators (armnn, rknn) the same way
        path = snapshot_download(model.repo, revision=model.revision, allow_patterns=["config.json", f"{side}/*"],
                                 ignore_patterns=["*.armnn", "*.rknn"])
    except RepositoryNotFoundError as exc:
        raise ModelError(f"{setting_name}={model.setting}: the Hugging Face hub has no model {model.repo} "
                         "(immich's catalogue: `findimage models`).") from exc
    except RevisionNotFoundError as exc:
        raise ModelError(f"{setting_name}={model.setting}: {model.repo} has no revision {model.revision}.") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelError(f"{model.repo} is not in the Hugging Face cache and cannot be downloaded now "
                         f"(HF_HUB_OFFLINE=1, or the hub is out of reach): download it once where the hub can be "
                         f"reached, or point {setting_name} at a local folder.") from exc
    except HFValidationError as exc:
        raise ModelError(f"{setting_name}={model.setting} is not a model name the hub accepts ({exc}).") from exc
    except (OSError, HTTPError) as exc:  # the hub failing, a proxy refusing, a cache that cannot be written
        raise ModelError(f"{model.repo} could not be downloaded from the Hugging Face hub: {exc}") from exc
    log.info("model %s (%s) in %s", model.repo, side, path)
    return Path(path)


def cached_commit(repo: str, revision: str | None = None) -> str | None:
    """The commit of `repo`'s revision (main by default) in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json", revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None


def folder_fingerprint(folder: Path) -> str:
    """`<folder>@<hash>` of the model's files (their names, sizes and first MiB), so replaced weights count as
    another model."""
    digest = hashlib.sha256()
    files = [folder / "config.json"] + sorted(file for side in SIDE_FILES for file in (folder / side).rglob("*")
                                              if file.is_file())
    for file in files:
        if not file.is_file():
            continue
        digest.update(file.relative_to(folder).as_posix().encode())
        with open(file, "rb") as f:
            digest.update(f.read(1 << 20))
        digest.update(str(file.stat().st_size).encode())
    return f"{folder.resolve().name}@{digest.hexdigest()[:12]}"


def read_json(path: Path, model_id: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The model {model_id} has an unreadable {path.name} ({exc}).") from exc
    if not isinstance(data, dict):
        raise ModelError(f"The model {model_id} has an unreadable {path.name} (not a JSON object).")
    return data

"""`findimage doctor`: a deployment checked the way an admin would, one line per check.

Here the result of a check and the checks of the core (the settings, the data folder, the store, the
models); the archive and the queue are checked in indexer/doctor.py, Slack in bot/doctor.py, and the
CLI runs them in order. A check never stops the others: one that needs an earlier one says it was
skipped, and why. No detail shows a secret: URLs go through `public_url`, tokens are only ever named.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from findimage.config import ConfigError, Settings, load_settings, public_url
from findimage.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, AccessDenied, FindimageError
from findimage.process import printable

if TYPE_CHECKING:
    from findimage.models.layout import LayoutModel

log = logging.getLogger(__name__)
OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 2**30  # below it the data folder is reported: a pass's writes, the kNN snapshot, SQLite's WAL
# The default models' download from the hub (their weights; everything else is a few MB).
DOWNLOAD_SIZES = {"sentence-transformers/clip-ViT-B-32": "about 600 MB",
                  "sentence-transformers/clip-ViT-B-32-multilingual-v1": "about 540 MB"}


@dataclass(frozen=True)
class Check:
    """One line of `findimage doctor`: what was checked, ok/warn/fail, and what was found (and, when not
    ok, what to do). A failure carries the exit code of its kind: EXIT_USAGE where a setting, token or
    permission must change, EXIT_UNAVAILABLE where something cannot be reached."""

    name: str
    status: str
    detail: str
    exit_code: int = EXIT_OK

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail}

    def line(self, width: int = 12) -> str:
        return f"{self.status:<4}  {self.name:<{width}}  {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, printable(detail))


def warn(name: str, detail: str) -> Check:
    return Check(name, WARN, printable(detail))


def fail(name: str, detail: str, exit_code: int = EXIT_USAGE) -> Check:
    return Check(name, FAIL, printable(detail), exit_code)


def failed(name: str, exc: FindimageError) -> Check:
    """A failure findimage explains, as a check: its sentence; the exit code by kind (refused credentials
    are a setting to change, though the store's errors count them as unavailability)."""
    unreachable = exc.exit_code == EXIT_UNAVAILABLE and not isinstance(exc, AccessDenied)
    return fail(name, str(exc).replace("\n", " "), EXIT_UNAVAILABLE if unreachable else EXIT_USAGE)


def skipped(names: tuple[str, ...], why: str) -> list[Check]:
    return [warn(name, f"not checked: {why}") for name in names]


def guarded(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    """The check's lines; a failure it did not expect is a line too, and the next checks still run."""
    try:
        found = check()
    except FindimageError as exc:
        return [failed(name, exc)]
    except Exception as exc:  # noqa: BLE001 - its text may quote a URL with credentials: only its type is shown
        log.info("check %s failed", name, exc_info=True)
        return [fail(name, f"could not be checked ({type(exc).__name__}; run with -v to see where).")]
    return found if isinstance(found, list) else [found]


def exit_code(checks: list[Check]) -> int:
    """The first failing check's code (EXIT_USAGE or EXIT_UNAVAILABLE); 0 with warnings alone."""
    return next((c.exit_code for c in checks if c.status == FAIL), EXIT_OK)


# ---- the core's checks ------------------------------------------------------------------------------
CHECKS = ("data dir", "store", "image model", "text model")


def settings_check() -> tuple[Settings | None, Check]:
    """The settings as every command loads them; each problem named (a ConfigError is a line, not a stop)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return None, fail("settings", " ".join(exc.problems))
    source = "the environment and .env" if Path(".env").is_file() else "the environment"
    store = f"Elasticsearch at {public_url(settings.elasticsearch_url)}" if settings.uses_elasticsearch \
        else "the embedded store"
    mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
    return settings, ok("settings", f"read from {source}: {store}, Slack in {mode}")


def data_dir_check(settings: Settings) -> Check:
    """FINDIMAGE_DATA_DIR: there or creatable, really writable (a file is written and removed), its free space."""
    folder = settings.data_dir
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return fail("data dir", f"FINDIMAGE_DATA_DIR={folder} cannot be created: {existing} is not a folder; "
                                "point FINDIMAGE_DATA_DIR at a folder findimage may write.")
    if existing == folder:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            return fail("data dir", f"FINDIMAGE_DATA_DIR={folder} is not writable ({exc.strerror}): give this "
                                    "user write access to it, or point FINDIMAGE_DATA_DIR at a folder it may write.")
        where = f"{folder} is writable"
    elif os.access(existing, os.W_OK | os.X_OK):
        where = f"{folder} does not exist yet; it is created on first use ({existing} is writable)"
    else:
        return fail("data dir", f"FINDIMAGE_DATA_DIR={folder} does not exist and cannot be created ({existing} is "
                                "not writable): create it for this user, or point FINDIMAGE_DATA_DIR elsewhere.")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        return warn("data dir", f"{where}, but only {_size(free)} is free there: free some space (the store, its "
                                "snapshots and logs grow with the archive).")
    return ok("data dir", f"{where}, {_size(free)} free")


def store_check(settings: Settings) -> Check:
    """The store opens and answers; its documents, the image model it was built with against the configured
    one; on Elasticsearch the server's version and license, and what the credentials in use may do."""
    from findimage.backends import open_store, server_checkup
    from findimage.errors import ModelMismatch, check_image_model
    from findimage.models.factory import model_fingerprint
    from findimage.stores.base import META_IMAGE_MODEL

    rights = ""
    if settings.uses_elasticsearch:
        server = server_checkup(settings)
        assert server is not None
        unread = " and ".join(name for name, value in (("version", server.version), ("license", server.license))
                              if not value)
        about = (f"Elasticsearch {server.version or ''} at {public_url(settings.elasticsearch_url)}".replace("  ", " ")
                 + (f" (license {server.license})" if server.license else "")
                 + (f" ({unread} not readable with these credentials)" if unread else "")
                 + f", index {settings.index_name}")
        credentials = ("ELASTICSEARCH_API_KEY" if settings.elasticsearch_api_key else
                       "ELASTICSEARCH_USERNAME" if settings.elasticsearch_username else "no credentials")
        roles = [role for role, missing in server.missing.items() if not missing]
        if not server.security:
            rights = "; security is off (no credentials are checked)"
        elif not roles:
            lacking = "; ".join(f"the {role} needs {_few(missing)}" for role, missing in server.missing.items())
            return fail("store", f"{about}: {credentials} may run neither the bot nor the indexer ({lacking}): "
                                 "make their keys with `findimage keys create` and set ELASTICSEARCH_API_KEY.")
        else:
            rights = f"; {credentials} may run " + " and ".join(f"the {role}" for role in roles) + "".join(
                f", not the {role} (it needs {_few(missing)})" for role, missing in server.missing.items()
                if missing)
    elif not (settings.data_dir / "findimage.sqlite").is_file():
        return warn("store", f"the embedded store in {settings.data_dir} holds no index yet: run `findimage index`.")
    else:
        about = f"the embedded store in {settings.data_dir}"
    store = open_store(settings)
    try:
        count, built = store.count(), store.get_meta(META_IMAGE_MODEL)
    finally:
        store.close()
    try:
        check_image_model(built, model_fingerprint(settings.image_model))
    except ModelMismatch as exc:
        return fail("store", f"{about}: {count:,} documents. {exc}")
    if not count:
        return warn("store", f"{about}: no documents yet{rights}; run `findimage index`.")
    return ok("store", f"{about}: {count:,} documents of the configured image model{rights}")


def model_checks(settings: Settings) -> list[Check]:
    """Both models present where they load from (a folder, the Hugging Face cache), without loading them."""
    checks = guarded("image model", lambda: model_check("image model", "FINDIMAGE_IMAGE_MODEL", settings.image_model))
    if settings.text_embedder == "elasticsearch" and settings.text_fallback == "off":
        checks.append(ok("text model", f"queries are vectorized by Elasticsearch's _infer "
                                       f"(FINDIMAGE_INFER_MODEL_ID={settings.infer_model_id}; `findimage status` says "
                                       "whether it answers)"))
    else:
        checks += guarded("text model", lambda: model_check("text model", "FINDIMAGE_TEXT_MODEL", settings.text_model))
    return checks


def model_check(name: str, setting: str, model: str, cache_dir: str | Path | None = None) -> Check:
    """A model in immich's layout (layout_check), or a sentence-transformers one: a local folder, or a hub id
    as sentence-transformers resolves it (a bare name is one of its own models) in the Hugging Face cache;
    otherwise where it would come from, or that HF_HUB_OFFLINE forbids it."""
    import importlib.util

    from huggingface_hub import constants, try_to_load_from_cache

    from findimage.models.layout import layout_model

    layout = layout_model(model)
    if layout is not None:
        return layout_check(name, setting, layout, cache_dir)
    if not all(importlib.util.find_spec(name) for name in ("torch", "sentence_transformers")):
        return fail(name, f"{setting}={model} runs on torch with sentence-transformers, which are not installed: "
                          "install findimage's torch extra, or choose a model in immich's layout (`findimage "
                          "models`).")
    path = Path(model)
    if path.is_dir():
        if not any((path / marker).is_file() for marker in ("modules.json", "config.json")):
            return fail(name, f"{setting}={model} is a folder without a model (no modules.json or config.json): "
                              "point it at the folder of a sentence-transformers model or of a model in immich's "
                              "layout.")
        return ok(name, f"{model}: a local folder ({_size(_folder_bytes(path))})")
    if path.exists() or model.count("/") > 1 or model.startswith((".", os.sep)):
        return fail(name, f"{setting}={model} is not a folder: point it at a model's folder or a hub id.")
    repo = model if "/" in model else f"sentence-transformers/{model}"
    cached = try_to_load_from_cache(repo, "modules.json", cache_dir=cache_dir)
    if isinstance(cached, str):
        return ok(name, f"{repo}: in the Hugging Face cache ({_size(_folder_bytes(Path(cached).parent))})")
    size = DOWNLOAD_SIZES.get(repo, "its size is on its hub page")
    url = f"{constants.ENDPOINT}/{repo}"
    if constants.HF_HUB_OFFLINE:
        return fail(name, f"{repo} is not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it "
                          f"({url}, {size}): download it once with HF_HUB_OFFLINE unset, or point {setting} at a "
                          "local folder.")
    return warn(name, f"{repo} is not in the Hugging Face cache: it is downloaded from {url} on first start "
                      f"({size}).")


def layout_check(name: str, setting: str, model: LayoutModel, cache_dir: str | Path | None = None) -> Check:
    """A model in immich's layout (run on ONNX Runtime): a folder with the files of the side the setting needs,
    or a hub model in the Hugging Face cache; otherwise where it would come from, or that HF_HUB_OFFLINE
    forbids it."""
    from huggingface_hub import constants, try_to_load_from_cache

    from findimage.models.layout import SIDE_FILES, Side

    side: Side = "visual" if setting == "FINDIMAGE_IMAGE_MODEL" else "textual"
    if model.folder is not None:
        missing = [f"{side}/{file}" for file in SIDE_FILES[side] if not (model.folder / side / file).is_file()]
        if missing:
            return fail(name, f"{setting}={model.setting} is a folder in immich's layout without "
                              f"{' and '.join(missing)}: point it at a folder that has them.")
        return ok(name, f"{model.setting}: a local folder in immich's layout ({_size(_folder_bytes(model.folder))}), "
                        "run on ONNX Runtime")
    assert model.repo is not None
    cached = try_to_load_from_cache(model.repo, f"{side}/model.onnx", revision=model.revision, cache_dir=cache_dir)
    if isinstance(cached, str):
        folder = Path(cached).parents[1]  # the snapshot, named after its commit
        return ok(name, f"{model.repo}@{folder.name}: in the Hugging Face cache "
                        f"({_size(_folder_bytes(folder / side))}), run on ONNX Runtime")
    url = f"{constants.ENDPOINT}/{model.repo}"
    if constants.HF_HUB_OFFLINE:
        return fail(name, f"{model.repo} is not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading "
                          f"it ({url}): download it once with HF_HUB_OFFLINE unset, or point {setting} at a local "
                          "folder.")
    return warn(name, f"{model.repo} is not in the Hugging Face cache: its {side} side is downloaded from {url} on "
                      "first start (sizes: `findimage models`).")


def _few(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _folder_bytes(folder: Path) -> int:
    """The size of a model's files (links followed: the hub cache's snapshots link to its blobs)."""
    total = 0
    for file in folder.rglob("*"):
        try:
            if file.is_file():
                total += file.stat().st_size
        except OSError:
            continue
    return total


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}" if unit == "GB" else f"{count / scale:,.0f} {unit}"
    return f"{count:,.0f} bytes"

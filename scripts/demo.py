"""The quick-start demo: index a few public-domain photos on the embedded store, then search them.

Photos: scikit-image's bundled sample photographs (CC0 / public domain, see SAMPLES), taken from its
PyPI wheel without installing it. Models: FINDIMAGE_IMAGE_MODEL / FINDIMAGE_TEXT_MODEL when set, the real
CLIP models when the Hugging Face hub is reachable, and otherwise generated random-weight stand-ins
(loudly labelled: their rankings carry no meaning).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
SKIMAGE = "scikit-image==0.25.2"
# file in the wheel -> place in the demo archive, with its licence as scikit-image documents it
SAMPLES = {
    "camera.png": ("people/cameraman.png", "CC0, Lav Varshney"),
    "astronaut.png": ("people/astronaut-eileen-collins.png", "public domain, NASA"),
    "chelsea.png": ("animals/chelsea-the-cat.png", "CC0, Stefan van der Walt"),
    "coffee.png": ("food/coffee-cup.png", "CC0, Rachel Michetti"),
    "rocket.jpg": ("space/falcon9-launch.jpg", "public domain, SpaceX"),
    "hubble_deep_field.jpg": ("space/hubble-deep-field.jpg", "public domain, NASA"),
}


def sample_archive() -> Path:
    archive = DEMO / "archive"
    if all((archive / target).is_file() for target, _ in SAMPLES.values()):
        return archive
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--only-binary=:all:",
                        SKIMAGE, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name, (target, _) in SAMPLES.items():
                (archive / target).parent.mkdir(parents=True, exist_ok=True)
                (archive / target).write_bytes(zf.read(f"skimage/data/{name}"))
    (archive / "LICENSES.txt").write_text("".join(f"{t}: {lic}\n" for t, lic in SAMPLES.values()))
    return archive


def hub_reachable() -> bool:
    import requests

    try:
        return requests.head("https://huggingface.co", timeout=5).status_code < 500
    except requests.RequestException:
        return False


def model_env() -> dict[str, str]:
    if os.environ.get("FINDIMAGE_IMAGE_MODEL") or hub_reachable():
        return {}
    print("! The Hugging Face hub is unreachable, so the real CLIP weights cannot be loaded here.\n"
          "! Using generated random-weight models of the same size: everything runs for real,\n"
          "! but the rankings below carry no meaning. Set FINDIMAGE_IMAGE_MODEL / FINDIMAGE_TEXT_MODEL\n"
          "! to local copies of clip-ViT-B-32 and clip-ViT-B-32-multilingual-v1 for real results.\n")
    spec = importlib.util.spec_from_file_location("make_test_models", ROOT / "scripts" / "make_test_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    models = module.ensure_models("full")
    return {"FINDIMAGE_IMAGE_MODEL": str(models["image"]), "FINDIMAGE_TEXT_MODEL": str(models["text"]),
            "HF_HUB_OFFLINE": "1"}


def findimage(env: dict[str, str], *args: str) -> None:
    print(f"$ findimage {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "findimage"), *args], env=env, check=True)
    print()


def main() -> int:
    archive = sample_archive()
    env = {**os.environ, "FINDIMAGE_ARCHIVE": str(archive), "FINDIMAGE_DATA_DIR": str(DEMO / "data"),
           **model_env()}
    env.pop("ELASTICSEARCH_URL", None)  # the demo is the embedded default
    findimage(env, "index")
    findimage(env, "search", "ein schneebedeckter Berg")
    findimage(env, "search", "a rocket launch", "-k", "3")
    findimage(env, "search", "--image", str(archive / "animals" / "chelsea-the-cat.png"), "-k", "3")
    findimage(env, "status")
    print(f"Try your own queries with FINDIMAGE_ARCHIVE={archive} FINDIMAGE_DATA_DIR={DEMO / 'data'}"
          + "".join(f" {k}={v}" for k, v in env.items() if k.startswith("FINDIMAGE_") and k.endswith("MODEL"))
          + " .venv/bin/findimage search \"...\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())

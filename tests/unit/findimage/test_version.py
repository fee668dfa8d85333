"""Which version findimage says it is: a source checkout its pyproject.toml, an installed package its metadata."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import findimage

ROOT = Path(__file__).resolve().parents[3]


def version_seen_from(root: Path) -> str:
    done = subprocess.run([sys.executable, "-c", "import findimage; print(findimage.__version__)"],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}, cwd=root, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_a_source_checkout_says_the_version_its_pyproject_holds():
    assert findimage.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_a_package_without_pyproject_beside_it_says_its_installed_version(tmp_path):
    shutil.copytree(ROOT / "findimage", tmp_path / "findimage", ignore=shutil.ignore_patterns("__pycache__"))
    assert version_seen_from(tmp_path) == importlib.metadata.version("findimage")


def test_a_pyproject_of_another_project_beside_it_is_not_taken_for_its_own(tmp_path):
    shutil.copytree(ROOT / "findimage", tmp_path / "findimage", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\nversion = "9.9.9"\n')
    assert version_seen_from(tmp_path) == importlib.metadata.version("findimage")

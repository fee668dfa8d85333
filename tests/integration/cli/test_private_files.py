"""What findimage writes is its own user's alone, and what it logs cannot be forged by a file name."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from bot_support import process_env
from photos import save_photo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def findimage(env: dict, *argv: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, from a shell whose umask (022) lets everyone read new files."""
    return subprocess.run([sys.executable, "-m", "findimage_cli", *argv], env=process_env(env), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o022))


def test_the_data_folder_and_every_file_in_it_are_private(env, tmp_path):
    for i in range(3):
        save_photo(tmp_path / "archive" / "events" / f"photo-{i}.jpg", seed=i)
    (tmp_path / "archive" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")  # so the state file is written
    assert findimage(env, "index").returncode == 0
    assert findimage(env, "search", "a photo").returncode == 0

    data = tmp_path / "data"
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
             for p in [data, *data.rglob("*")]}
    assert "data/indexer-state.json" in modes and any(name.endswith(".faiss") for name in modes)
    assert {name: mode for name, mode in modes.items()
            if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)} == {}


def test_a_file_name_with_a_newline_cannot_forge_a_log_or_status_line(env, tmp_path):
    save_photo(tmp_path / "archive" / "fine.jpg", seed=1)
    forged = "x.jpg\n2026-01-01 00:00:00 CRITICAL indexer: all images deleted"
    (tmp_path / "archive" / f"{forged}.jpg").write_bytes(b"not an image")
    indexed = findimage(env, "-v", "index")
    status = findimage(env, "status")

    for output in (indexed.stderr, indexed.stdout, status.stdout):
        assert not any(line.startswith("2026-01-01 00:00:00 CRITICAL") for line in output.splitlines()), output
    assert "x.jpg\\n2026-01-01 00:00:00 CRITICAL indexer: all images deleted.jpg" in indexed.stderr
    assert "x.jpg\\n2026-01-01 00:00:00 CRITICAL" in status.stdout

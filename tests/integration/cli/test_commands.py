"""The findimage command as a newcomer uses it: index, search by text or image, status, and mistakes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from photos import write_bad_files

from findimage_cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from indexer.run import index_once


@pytest.fixture
def indexed(settings, archive):
    index_once(settings)
    return archive


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


ROOT = Path(__file__).resolve().parents[3]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_is_the_one_in_pyproject(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == EXIT_OK
    assert capsys.readouterr().out == f"findimage {VERSION}\n"


def test_version_answers_without_any_configuration(tmp_path):
    """An admin asks what is installed before configuring anything: no archive, no Slack, no store."""
    done = subprocess.run([sys.executable, str(ROOT / "findimage_cli.py"), "--version"], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"findimage {VERSION}\n", "")


def test_index_prints_a_summary_and_the_failures(settings, archive, capsys):
    write_bad_files(archive / "bad")
    code, out, err = run(capsys, "index")
    assert code == EXIT_OK
    assert out.startswith("added 7, updated 0, moved 0, removed 0, unchanged 0, failed 5 in ")
    assert "images/s" in out
    assert "failed: bad/empty.jpg: empty file" in err
    code, out, _ = run(capsys, "index")
    assert "added 0" in out and "unchanged 7" in out


def test_text_search_prints_rank_score_and_path(indexed, capsys):
    code, out, _ = run(capsys, "search", "ein", "schneebedeckter", "Berg", "-k", "3")
    lines = [line for line in out.splitlines() if not line.startswith("(uncertain")]
    assert code == EXIT_OK and len(lines) == 3
    ranks, scores, paths = zip(*(line.split()[:3] for line in lines), strict=True)
    assert ranks == ("1", "2", "3")
    assert all(0 <= float(s) <= 1 for s in scores) and list(scores) == sorted(scores, reverse=True)
    assert all((indexed / p).is_file() for p in paths)


def test_json_output_parses_and_has_the_documented_fields(indexed, capsys):
    code, out, _ = run(capsys, "search", "雪山", "--json", "-k", "10")
    matches = json.loads(out)
    assert code == EXIT_OK and len(matches) == 7
    assert set(matches[0]) == {"image_id", "image_name", "relative_path", "score", "matched", "text_snippet",
                               "also_at", "near_copies", "taken", "taken_source"}


def test_folder_limits_the_matches(indexed, capsys):
    _, out, _ = run(capsys, "search", "stage lights", "--folder", "events/2024", "--json", "-k", "10")
    assert {m["relative_path"].rsplit("/", 1)[0] for m in json.loads(out)} == {"events/2024"}
    _, out, _ = run(capsys, "search", "stage lights", "--folder", "nowhere")
    assert "No indexed images under the folder 'nowhere'" in out


def test_image_search_finds_the_identical_archive_image_first(indexed, capsys):
    code, out, _ = run(capsys, "search", "--image", str(indexed / "nature" / "mountain-1.png"), "-k", "2")
    first = [line for line in out.splitlines() if not line.startswith("(")][0]
    assert code == EXIT_OK and first.split()[2] == "nature/mountain-1.png" and "(exact match)" in first


# Every mistake in what was asked exits 2 (EXIT_USAGE), whichever layer finds it.
@pytest.mark.parametrize("argv, message, exit_code", [
    (["search", "   "], "The query is empty", EXIT_USAGE),
    (["search", "x" * 10_000], "The query is too long (10,000 characters", EXIT_USAGE),
    (["search", "--image", "/no/such/photo.jpg"], "No image file at /no/such/photo.jpg", EXIT_USAGE),
    (["search", "-k", "0", "mountain"], "-k 0 must be a whole number from 1 to 1000", EXIT_USAGE),
    (["search", "mountain", "--after", "2024-13"], "2024-13", EXIT_USAGE),
])
def test_bad_queries_get_a_clear_message(indexed, capsys, argv, message, exit_code):
    code, out, err = run(capsys, *argv)
    assert code == exit_code and out == ""
    assert err.startswith("findimage: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_broken_query_image_gets_a_clear_message(indexed, capsys, tmp_path):
    write_bad_files(tmp_path / "bad")
    code, _, err = run(capsys, "search", "--image", str(tmp_path / "bad" / "login.jpg"))
    assert code == EXIT_ERROR and "not an image" in err


def test_search_before_indexing_says_so(settings, capsys):
    code, out, _ = run(capsys, "search", "mountain")
    assert code == EXIT_OK and "not indexed yet" in out


def test_status_shows_store_count_models_and_last_pass(indexed, capsys, settings):
    code, out, _ = run(capsys, "status")
    assert code == EXIT_OK
    assert out.splitlines()[0] == f"version:      {VERSION}"
    assert "embedded" in out and "documents:    7" in out
    assert "clip-ViT-B-32@" in out and "added 7" in out
    assert "knn index:    flat over 7 vectors (current)" in out
    assert "remembered:   0 channel(s), 0 image(s)" in out


def test_status_counts_the_slack_events_the_bot_kept_and_has_not_applied(indexed, capsys, settings):
    from findimage.backends import open_remembered
    from findimage.stores.base import LIFECYCLE, REMEMBER, Pending

    remembered = open_remembered(settings)
    remembered.registry.keep([Pending("Ev1", REMEMBER, {}, 1.0), Pending("Ev2", REMEMBER, {}, 2.0),
                              Pending("Ev3", LIFECYCLE, {}, 3.0)])
    remembered.close()
    code, out, _ = run(capsys, "status")
    assert code == EXIT_OK
    assert "waiting: 2 message(s) with images to remember, 1 deletion(s) to apply" in out


def test_every_configuration_problem_is_reported_at_once(settings, capsys, monkeypatch):
    monkeypatch.setenv("FINDIMAGE_TOP_K", "many")
    monkeypatch.setenv("FINDIMAGE_INDEX_INTERVAL_MINUTES", "-5")
    monkeypatch.setenv("FINDIMAGE_TEXT_EMBEDDER", "elasticsearch")
    code, _, err = run(capsys, "status")
    assert code == EXIT_USAGE
    assert "FINDIMAGE_TOP_K='many' is not a whole number" in err
    assert "FINDIMAGE_INDEX_INTERVAL_MINUTES=-5 must be at least 0.1" in err
    assert "FINDIMAGE_TEXT_EMBEDDER=elasticsearch needs ELASTICSEARCH_URL" in err


def test_dotenv_file_is_read(settings, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINDIMAGE_TOP_K", raising=False)
    (tmp_path / ".env").write_text("FINDIMAGE_TOP_K=0\n")
    code, _, err = run(capsys, "status")
    assert code == EXIT_USAGE and "FINDIMAGE_TOP_K=0 must be between 1 and 50" in err


def test_search_after_an_image_model_change_says_how_to_rebuild(indexed, capsys, monkeypatch, test_models, tmp_path):
    from findimage.models.clip import model_fingerprint

    other = tmp_path / "other-image-model"
    shutil.copytree(test_models["image"], other)
    with open(other / "modules.json", "a") as f:
        f.write("\n")  # same layout, other files: another model as far as the index knows
    monkeypatch.setenv("FINDIMAGE_IMAGE_MODEL", str(other))

    code, out, err = run(capsys, "search", "a mountain")

    assert code == EXIT_ERROR and out == ""
    assert err == ("findimage: The index was built with the image model "
                   f"{model_fingerprint(str(test_models['image']))}, "
                   f"but FINDIMAGE_IMAGE_MODEL is now {model_fingerprint(str(other))}. Run `findimage index --full` "
                   "to re-embed the archive with it.\n")


def test_a_text_model_that_cannot_be_loaded_is_one_sentence(indexed, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FINDIMAGE_TEXT_MODEL", str(tmp_path / "no-such-model"))
    code, out, err = run(capsys, "search", "a mountain")
    assert code == EXIT_ERROR and out == ""
    assert err.startswith(f"findimage: Could not load the model '{tmp_path / 'no-such-model'}': ")
    assert err.rstrip().endswith("Point FINDIMAGE_IMAGE_MODEL / FINDIMAGE_TEXT_MODEL at a hub id you can reach or "
                                 "a local directory.")
    assert "Traceback" not in err


def test_a_bug_is_reported_as_one_and_its_traceback_only_with_v(indexed, capsys, monkeypatch):
    import findimage.search

    def broken(*args, **kwargs):
        raise KeyError("finished_at")

    monkeypatch.setattr(findimage.search.Searcher, "search", broken)
    code, _, err = run(capsys, "search", "a photo")
    assert code == EXIT_ERROR
    assert err == "findimage: unexpected error (run with -v to see where it happened).\n"
    assert "finished_at" not in err


def test_status_reads_a_last_pass_recorded_by_another_version(indexed, capsys, settings):
    from findimage.backends import open_store
    from findimage.stores.base import META_LAST_PASS

    store = open_store(settings, writer=True)
    store.set_meta(META_LAST_PASS, '{"added": 3}')  # no finished_at: an older or damaged record
    store.close()
    code, out, _ = run(capsys, "status")
    assert code == EXIT_OK and "last pass:    recorded in a form this version does not read" in out


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_output_read_only_in_part_is_no_error(indexed, settings, unbuffered):
    """`findimage status | head -3`: the reader stops early; the command says nothing about it."""
    import os

    env = {**os.environ, "FINDIMAGE_ARCHIVE": str(settings.archive), "FINDIMAGE_DATA_DIR": str(settings.data_dir),
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}
    env.pop("ELASTICSEARCH_URL", None)
    process = subprocess.Popen([sys.executable, str(ROOT / "findimage_cli.py"), "status"], cwd=settings.data_dir.parent,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and err == "", err

"""Passwords in FINDIMAGE_QUEUE_URL and ELASTICSEARCH_URL never appear in what `findimage` prints or logs,
whatever characters they hold: written unencoded (the settings check refuses the URL without quoting it),
percent-encoded and right, or percent-encoded and wrong."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from urllib.parse import quote

import pytest
from es_support import dead_url
from redis_support import Redis

from findimage_cli import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE

# Each holds a character that ends a URL's host for urllib (/ ? #) or starts it (@).
PASSWORDS = ["Zq9/slash-pw", "Zq9?query-pw", "Zq9#hash-pw", "Zq9@at-pw", "Zq9/a?b#c@d"]


def cli(env: dict, *argv: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "findimage_cli", *argv], capture_output=True, text=True, timeout=120,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith(("FINDIMAGE_", "ELASTIC"))},
                              **env})
    return run


def shows_none_of(run: subprocess.CompletedProcess, password: str) -> bool:
    """Neither the password, nor its encoded form, nor a piece of it around the special character."""
    shown = run.stdout + run.stderr
    pieces = {password, quote(password, safe=""), *(p for p in password.replace("?", "/").replace("#", "/")
                                                     .replace("@", "/").split("/") if len(p) >= 3)}
    return not [piece for piece in pieces if piece in shown]


@pytest.mark.parametrize("password", [p for p in PASSWORDS if set(p) & set("/?#")])
def test_an_unencoded_password_is_refused_by_the_settings_check_without_being_shown(env, password):
    for name, url in (("FINDIMAGE_QUEUE_URL", f"redis://:{password}@127.0.0.1:6379/0"),
                      ("ELASTICSEARCH_URL", f"https://elastic:{password}@es.example.com:9200")):
        for argv in (["status"], ["-v", "status"], ["-v", "worker"], ["-v", "index"]):
            run = cli({**env, name: url}, *argv)
            assert run.returncode == EXIT_USAGE, (name, argv, run.stderr)
            assert f"findimage: configuration problem: {name} cannot be read as a URL" in run.stderr
            assert shows_none_of(run, password), (name, argv, run.stderr)


def test_an_unencoded_at_sign_is_read_as_urllib_reads_it_and_not_shown(env):
    """The host follows the last @: a password holding one still works, and is still cut off."""
    password = "Zq9@at-pw"
    dead = dead_url()
    run = cli({**env, "ELASTICSEARCH_URL": dead.replace("://", f"://elastic:{password}@")}, "-v", "status")
    assert run.returncode == EXIT_UNAVAILABLE and f"Elasticsearch at {dead} is not reachable" in run.stderr
    assert shows_none_of(run, password), run.stderr


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = Redis(tmp_path_factory.mktemp("redis"), password=PASSWORDS[-1])
    server.start()
    yield server
    server.stop()


def test_status_shows_the_queue_without_its_password_right_or_wrong(env, redis_with_password):
    good = redis_with_password.url
    assert quote(PASSWORDS[-1], safe="") in good
    public = f"redis://127.0.0.1:{redis_with_password.port}/0"

    run = cli({**env, "FINDIMAGE_QUEUE_URL": good}, "-v", "status")
    assert run.returncode == EXIT_OK, run.stderr
    assert f"queue:        {public}: no pass running" in run.stdout
    assert shows_none_of(run, PASSWORDS[-1])

    for password in PASSWORDS[:-1]:
        wrong = good.replace(quote(PASSWORDS[-1], safe=""), quote(password, safe=""))
        run = cli({**env, "FINDIMAGE_QUEUE_URL": wrong}, "-v", "status")
        assert run.returncode == EXIT_OK, run.stderr
        assert (f"queue:        {public} refused the password (check the one in FINDIMAGE_QUEUE_URL)"
                in run.stdout), run.stdout
        assert shows_none_of(run, password) and shows_none_of(run, PASSWORDS[-1])


def test_a_worker_given_a_wrong_password_stops_with_one_sentence(env, redis_with_password):
    wrong = redis_with_password.url.replace(quote(PASSWORDS[-1], safe=""), quote(PASSWORDS[0], safe=""))
    run = cli({**env, "FINDIMAGE_QUEUE_URL": wrong}, "worker")
    assert run.returncode == EXIT_UNAVAILABLE
    assert run.stderr.strip().splitlines()[-1] == (
        f"findimage: The queue at redis://127.0.0.1:{redis_with_password.port}/0 refused the password (check the one "
        "in FINDIMAGE_QUEUE_URL).")
    assert "Traceback" not in run.stderr and shows_none_of(run, PASSWORDS[0]) and run.stdout == ""


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_encoded_elasticsearch_password_is_not_shown_when_elasticsearch_is_down(env, archive, password):
    dead = dead_url()
    url = dead.replace("://", f"://elastic:{quote(password, safe='')}@")
    for argv in (["status"], ["-v", "status"], ["-v", "search", "a snowy mountain"]):
        run = cli({**env, "ELASTICSEARCH_URL": url}, *argv)
        assert run.returncode == EXIT_UNAVAILABLE, run.stderr
        assert f"Elasticsearch at {dead} is not reachable" in run.stderr
        assert shows_none_of(run, password), run.stderr

"""`findimage doctor` as an admin runs it: the real command, against the Slack emulator, the tiny test models and
a temporary archive and data folder. A healthy deployment is all ok; each thing that is wrong is one failing line
naming what to change, with the exit code of its kind; warnings alone exit 0; no secret is ever shown."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bot_support import CHANNEL, free_port, process_env, slack_env
from es_support import dead_url
from slack_emulator import DEFAULT_BOT_SCOPES, SlackEmulator

from findimage.config import load_settings
from findimage.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from indexer.run import index_once

BOT_TOKEN, APP_TOKEN, SIGNING_SECRET = "xoxb-7-DoctorSecretBot", "xapp-1-A0APP-1-DoctorSecretApp", "DoctorSecretSign"
WRONG_BOT_TOKEN, WRONG_APP_TOKEN = "xoxb-7-DoctorSecretWrongBot", "xapp-1-A0APP-1-DoctorSecretWrongApp"
ES_KEY, ES_PASSWORD, QUEUE_PASSWORD = "DoctorSecretEsKey", "DoctorSecretEsPassword", "DoctorSecretQueue"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, WRONG_BOT_TOKEN, WRONG_APP_TOKEN, ES_KEY, ES_PASSWORD, QUEUE_PASSWORD,
           "DoctorSecret")
ORDER = ["settings", "archive", "data dir", "store", "image model", "text model", "slack token", "slack scopes",
         "slack mode", "channels"]


def emulator(**options) -> SlackEmulator:
    emu = SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET, **options)
    emu.start()
    emu.add_conversation(CHANNEL, "public", name="photos")
    return emu


@pytest.fixture(scope="module")
def slack():
    emu = emulator()
    yield emu
    emu.stop()


@pytest.fixture
def values(env, slack) -> dict[str, str]:
    return {**env, **slack_env(slack)}


def doctor(values: dict[str, str], cwd, *argv: str) -> subprocess.CompletedProcess:
    """`findimage doctor` run as deployed; nothing it prints holds a secret, or a traceback."""
    run = subprocess.run([sys.executable, "-m", "findimage_cli", "doctor", *argv], env=process_env(values), cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    shown = run.stdout + run.stderr
    assert not [secret for secret in SECRETS if secret in shown], shown
    assert "Traceback" not in run.stderr, run.stderr
    return run


def checks(run: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """--json's checks by name: (status, detail)."""
    found = json.loads(run.stdout)
    assert all(set(check) == {"check", "status", "detail"} for check in found), found
    return {check["check"]: (check["status"], check["detail"]) for check in found}


def test_a_healthy_deployment_is_all_ok_and_exits_0(values, archive, tmp_path):
    index_once(load_settings(values, env_file=None), progress=False)

    run = doctor(values, tmp_path)
    lines = run.stdout.splitlines()
    assert run.returncode == EXIT_OK, run.stdout + run.stderr
    width = max(len(name) for name in ORDER)
    assert [(line[:4].strip(), line[6:6 + width].strip()) for line in lines] == [("ok", name) for name in ORDER]

    found = checks(doctor(values, tmp_path, "--json"))
    assert list(found) == ORDER and {status for status, _ in found.values()} == {"ok"}
    assert found["archive"][1] == f"{values['FINDIMAGE_ARCHIVE']}: 7 images"
    assert found["store"][1].endswith(": 7 documents of the configured image model")
    assert found["slack token"][1] == ("the bot @findimage (U0BOT) in the workspace Findimage Test (T0TEAM, "
                                       "https://findimage-test.slack.com/)")
    assert found["slack scopes"][1] == "the bot token has all 12 scopes manifest.yml asks for"
    assert found["slack mode"][1].startswith("HTTP mode: SLACK_SIGNING_SECRET is set;")
    assert found["channels"][1] == "the bot is a member of 1 channel(s): #photos"

    socket_mode = checks(doctor({**values, "SLACK_APP_TOKEN": APP_TOKEN}, tmp_path, "--json"))
    assert socket_mode["slack mode"] == ("ok", "Socket Mode: Slack accepts SLACK_APP_TOKEN (apps.connections.open)")


def test_a_bot_token_slack_refuses_is_named_and_what_needs_it_is_skipped(values, tmp_path):
    run = doctor({**values, "SLACK_BOT_TOKEN": WRONG_BOT_TOKEN}, tmp_path, "--json")
    found = checks(run)
    assert run.returncode == EXIT_USAGE
    assert found["slack token"] == ("fail", "Slack refused SLACK_BOT_TOKEN (invalid_auth): copy the Bot User OAuth "
                                            "Token (xoxb-...) from the app's OAuth & Permissions page.")
    assert found["slack scopes"] == found["channels"] == ("warn", "not checked: needs a working SLACK_BOT_TOKEN "
                                                                  "(see above)")
    assert found["slack mode"][0] == "ok", "the signing secret is checked all the same"


def test_a_scope_the_manifest_asks_for_and_the_app_lacks_is_named(values, tmp_path):
    lacking = emulator(bot_scopes=[scope for scope in DEFAULT_BOT_SCOPES if scope != "files:write"])
    try:
        run = doctor({**values, **slack_env(lacking)}, tmp_path)
    finally:
        lacking.stop()
    assert run.returncode == EXIT_USAGE
    assert ("fail  slack scopes  the bot token lacks files:write: add it under OAuth & Permissions and reinstall the "
            "app.") in run.stdout.splitlines()


def test_an_app_token_slack_refuses_is_named_in_socket_mode(values, tmp_path):
    run = doctor({**values, "SLACK_APP_TOKEN": WRONG_APP_TOKEN}, tmp_path, "--json")
    assert run.returncode == EXIT_USAGE
    assert checks(run)["slack mode"] == ("fail", "Slack refused SLACK_APP_TOKEN (invalid_auth): copy the App-Level "
                                                 "Token (xapp-...) with the connections:write scope from the app's "
                                                 "Basic Information page.")


def test_a_missing_archive_fails_naming_its_setting(values, tmp_path):
    gone = tmp_path / "unmounted"
    run = doctor({**values, "FINDIMAGE_ARCHIVE": str(gone)}, tmp_path, "--json")
    assert run.returncode == EXIT_USAGE
    assert checks(run)["archive"] == ("fail", f"The archive folder {gone} does not exist. Is the archive mounted, and "
                                              "is FINDIMAGE_ARCHIVE right?")


def test_a_data_dir_that_cannot_be_created_fails_naming_its_setting(values, tmp_path):
    (tmp_path / "a-file").write_text("")
    run = doctor({**values, "FINDIMAGE_DATA_DIR": str(tmp_path / "a-file" / "data")}, tmp_path, "--json")
    status, detail = checks(run)["data dir"]
    assert (run.returncode, status) == (EXIT_USAGE, "fail")
    assert detail.startswith(f"FINDIMAGE_DATA_DIR={tmp_path / 'a-file' / 'data'} cannot be created")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_dir_this_user_may_not_write_fails_naming_its_setting(values, tmp_path):
    data = tmp_path / "read-only"
    data.mkdir()
    data.chmod(0o500)
    try:
        run = doctor({**values, "FINDIMAGE_DATA_DIR": str(data)}, tmp_path, "--json")
    finally:
        data.chmod(0o700)
    assert run.returncode == EXIT_USAGE
    assert checks(run)["data dir"] == ("fail", f"FINDIMAGE_DATA_DIR={data} is not writable (Permission denied): give "
                                               "this user write access to it, or point FINDIMAGE_DATA_DIR at a folder "
                                               "it may write.")


def test_an_elasticsearch_that_is_down_fails_as_unreachable_without_its_credentials(values, tmp_path):
    dead = dead_url()
    run = doctor({**values, "ELASTICSEARCH_URL": dead.replace("://", f"://elastic:{ES_PASSWORD}@"),
                  "ELASTICSEARCH_API_KEY": ES_KEY}, tmp_path, "--json")
    assert run.returncode == EXIT_UNAVAILABLE
    assert checks(run)["store"] == ("fail", f"Elasticsearch at {dead} is not reachable (connection refused): check "
                                            "that it is running and that ELASTICSEARCH_URL is right.")


def test_a_queue_that_is_not_reachable_fails_without_its_password(values, tmp_path):
    port = free_port()
    run = doctor({**values, "FINDIMAGE_QUEUE_URL": f"redis://:{QUEUE_PASSWORD}@127.0.0.1:{port}/0"}, tmp_path,
                 "--json")
    assert run.returncode == EXIT_UNAVAILABLE
    assert checks(run)["queue"] == ("fail", f"the queue at FINDIMAGE_QUEUE_URL=redis://127.0.0.1:{port}/0 is not "
                                            "reachable (connection refused): check that Redis runs there and that "
                                            "FINDIMAGE_QUEUE_URL is right.")


def test_a_setting_that_cannot_be_read_is_the_first_line_and_the_rest_wait_for_it(values, tmp_path):
    run = doctor({**values, "FINDIMAGE_TOP_K": "lots"}, tmp_path, "--json")
    found = checks(run)
    assert run.returncode == EXIT_USAGE
    assert found["settings"] == ("fail", "FINDIMAGE_TOP_K='lots' is not a whole number.")
    assert list(found) == ORDER
    assert {found[name] for name in ORDER[1:]} == {("warn", "not checked: the settings above must be fixed first")}


def test_warnings_alone_exit_0(values, tmp_path):
    """An empty archive, nothing indexed yet, and an allowed channel the bot was not invited to."""
    run = doctor({**values, "FINDIMAGE_CHANNELS": "C0ELSEWHERE"}, tmp_path, "--json")
    found = checks(run)
    assert run.returncode == EXIT_OK
    assert {name for name, (status, _) in found.items() if status == "warn"} == {"archive", "store", "channels"}
    assert found["channels"][1] == ("the bot is a member of 1 channel(s): #photos; FINDIMAGE_CHANNELS names "
                                    "C0ELSEWHERE, where it is not: invite it there with /invite @findimage, or remove "
                                    "them from FINDIMAGE_CHANNELS.")

"""What a deployment relies on: the Procfile's commands, the Slack app manifest, and clear start-up errors."""
from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from bot_support import CHANNEL, BotProcess, free_port, process_env, slack_env, with_settings
from slack_emulator import slack_signature

from bot.app import create_app
from bot.credentials import check_slack
from bot.handlers import channel_events
from bot.server import EXIT_USAGE
from findimage import __version__
from findimage.config import ConfigError
from findimage.errors import EXIT_ERROR, EXIT_UNAVAILABLE

ROOT = Path(__file__).resolve().parents[3]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_procfile_runs_the_bot_and_the_scheduled_indexer():
    assert procfile() == {"web": "findimage bot", "worker": "findimage schedule"}


def test_the_web_process_serves_health_checks_and_signed_slack_requests(indexed, env, emu, tmp_path):
    port = free_port()
    values = process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1")
    web = BotProcess(["bash", "-c", procfile()["web"]], values, cwd=tmp_path)
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            health = json.loads(answer.read())
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as answer:
            ready = answer.read()
        ack = emu.send_slash_command(f"{base}/slack/events", text="stage with red lights", channel_id=CHANNEL)
        results = emu.wait_for_upload(CHANNEL, timeout=20)
        forged = emu.send_slash_command(f"{base}/slack/events", text="x", signing_secret="not-it")
        chunked_small = post_chunked(emu, port, [b"a" * 10])
        chunked_large = post_chunked(emu, port, [b"a" * 64 * 1024] * 5)  # 320 KB, no Content-Length
    finally:
        status = web.stop()

    assert health == {"status": "ok", "version": __version__, "queued": 0}
    assert ready == b"Ready: 7 documents in the archive.\n"
    assert chunked_small[0] == 200 and b"c" * 10 in chunked_small[1], "gunicorn hands chunked bodies over"
    assert chunked_large[0] == 413, "and they are bounded too"
    assert ack.status == 200  # acks before answers: test_bot_slash_command (same WSGI app, answers held)
    assert len(results.files) == 5 and len(emu.uploads()) == 1
    assert forged.status == 401
    # one gunicorn worker process with request threads: the models are loaded once
    assert "Using worker: gthread" in web.output and len(re.findall(r"Booting worker with pid", web.output)) == 1
    assert status == 0, web.output


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (not editable) into a fresh venv; dependencies are
    borrowed from this venv through a path entry, so only findimage itself comes from the install."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"  # a copy: building in the checkout would leave build/ behind in it
    for name in ("pyproject.toml", "README.md", "findimage_cli.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in ("findimage", "indexer", "bot"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    fresh = root / "venv" / "bin" / "python"
    site = subprocess.run([str(fresh), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed-dependencies.pth").write_text(ours + "\n")
    (wheel,) = (root / "wheel").glob("findimage-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return root / "venv" / "bin"


def test_a_plain_install_serves_http_mode_from_any_folder(installed_copy, indexed, env, emu, tmp_path):
    where = subprocess.run([str(installed_copy / "python"), "-c", "import bot.server, findimage; "
                            "print(findimage.__file__)"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert where.stdout.startswith(str(installed_copy.parent)), "findimage comes from the installed copy"
    port = free_port()
    values = process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1")
    web = BotProcess([str(installed_copy / "findimage"), "bot"], values, cwd=tmp_path)
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            health = json.loads(answer.read())
    finally:
        status = web.stop()
    assert health == {"status": "ok", "version": __version__, "queued": 0}
    assert status == 0, web.output


def test_a_plain_install_carries_the_german_catalogue(installed_copy, tmp_path):
    said = subprocess.run([str(installed_copy / "python"), "-c", "import findimage.i18n as i; "
                           "print(i.__file__); print(i.language('de')._('Show more'))"],
                          capture_output=True, text=True, cwd=tmp_path, check=True).stdout.splitlines()
    assert said[0].startswith(str(installed_copy.parent)) and said[1] == "Mehr zeigen"


def post_chunked(emu, port: int, chunks: list[bytes]):
    """A signed url_verification-shaped POST sent with Transfer-Encoding: chunked (no Content-Length)."""
    if sum(map(len, chunks)) < 1000:
        body = json.dumps({"token": emu.verification_token, "challenge": "c" * 10, "type": "url_verification"})
        chunks = [body.encode()]
    body = b"".join(chunks)
    timestamp = str(int(time.time()))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/slack/events")
        for name, value in (("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                            ("X-Slack-Request-Timestamp", timestamp),
                            ("X-Slack-Signature", slack_signature(emu.signing_secret, timestamp, body))):
            connection.putheader(name, value)
        connection.endheaders()
        try:
            for chunk in chunks:
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest arrived
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_bot_refuses_to_start_without_its_tokens_and_says_which(tmp_path):
    values = process_env({"FINDIMAGE_ARCHIVE": str(tmp_path)})
    started = subprocess.run([sys.executable, "-m", "findimage_cli", "bot"], env=values, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)

    assert started.returncode == EXIT_USAGE
    assert "SLACK_BOT_TOKEN is not set" in started.stderr and "SLACK_SIGNING_SECRET is not set" in started.stderr


def test_the_manifest_declares_the_command_scopes_events_and_socket_mode_flag():
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())

    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/findimage" and command["url"].endswith("/slack/events")
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "chat:write", "files:read", "files:write", "channels:history", "groups:history",
        "channels:read", "groups:read", "im:read", "mpim:read", "im:write", "users:read"}
    events = manifest["settings"]["event_subscriptions"]
    assert events["request_url"].endswith("/slack/events")
    assert set(events["bot_events"]) == {"message.channels", "message.groups", "app_home_opened",
                                         *channel_events.EVENTS}
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True and interactivity["request_url"] == events["request_url"]
    (shortcut,) = manifest["features"]["shortcuts"]
    assert (shortcut["type"], shortcut["callback_id"]) == ("message", "find_similar")
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True, "the default install needs no public URL"
    assert 175 <= len(manifest["display_information"]["long_description"]) <= 4000


def test_a_bot_token_slack_refuses_stops_the_start_with_a_clear_message(bot_settings, emu):
    with pytest.raises(ConfigError, match=r"Slack refused SLACK_BOT_TOKEN .*invalid_auth"):
        create_app(with_settings(bot_settings, slack_bot_token="xoxb-revoked"))


PUBLIC = "https://findimage.example.org"


def test_the_access_log_shows_image_links_without_their_signatures(indexed, env, emu, tmp_path):
    port = free_port()
    values = process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1",
                         FINDIMAGE_PUBLIC_BASE_URL=PUBLIC, FINDIMAGE_URL_SIGNING_KEY="s" * 32)
    web = BotProcess(["bash", "-c", procfile()["web"]], values, cwd=tmp_path)
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        base = f"http://127.0.0.1:{port}"
        ack = emu.send_slash_command(f"{base}/slack/events", text="stage with red lights", channel_id=CHANNEL)
        reply = emu.wait_for_response(ack.response_url, containing="searched the archive", timeout=20)
        link = next(b["image_url"] for b in reply.blocks if b["type"] == "image")
        with urllib.request.urlopen(link.replace(PUBLIC, base), timeout=20) as answer:
            shown = answer.status
        # A browser that opened the link sends it as the referer of its next request.
        favicon = urllib.request.Request(f"{base}/favicon.ico", headers={"Referer": link})
        try:
            urllib.request.urlopen(favicon, timeout=20).close()
        except urllib.error.HTTPError:
            pass
        image_line = web.wait_for_line("GET /images/")
        favicon_line = web.wait_for_line("GET /favicon.ico")
    finally:
        status = web.stop()

    path, query = link.removeprefix(PUBLIC).split("?")
    assert shown == 200 and status == 0, web.output
    assert f'"GET {path} HTTP/1.1" 200' in image_line
    assert f'"{PUBLIC}{path}"' in favicon_line, "the referer without its query string"
    signature = re.search(r"sig=([0-9a-f]+)", query).group(1)
    assert "sig=" not in web.output and "expires=" not in web.output and signature not in web.output


def test_a_url_signing_key_shorter_than_32_bytes_stops_the_start_without_showing_it(indexed, env, emu, tmp_path):
    key = "short-but-secret-key-31-bytes.."
    values = process_env({**env, **slack_env(emu)}, FINDIMAGE_PUBLIC_BASE_URL=PUBLIC, FINDIMAGE_URL_SIGNING_KEY=key)
    started = subprocess.run([sys.executable, "-m", "findimage_cli", "bot"], env=values, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)

    assert started.returncode == EXIT_USAGE
    assert started.stderr.splitlines() == [
        "findimage: configuration problem: FINDIMAGE_URL_SIGNING_KEY must be at least 32 bytes long "
        "(e.g. the output of `openssl rand -hex 32`)."]
    assert key not in started.stdout + started.stderr
    assert len(key.encode()) == 31


BOT_TOKEN_SENTENCE = ("findimage: configuration problem: Slack refused SLACK_BOT_TOKEN (invalid_auth): copy the Bot "
                      "User OAuth Token (xoxb-...) from the app's OAuth & Permissions page.")
APP_TOKEN_SENTENCE = ("findimage: configuration problem: Slack refused SLACK_APP_TOKEN ({}): copy the App-Level Token "
                      "(xapp-...) with the connections:write scope from the app's Basic Information page.")


def start_bot(values: dict[str, str], cwd) -> subprocess.CompletedProcess:
    """`findimage bot` as deployed, run until it exits by itself."""
    return subprocess.run([sys.executable, "-m", "findimage_cli", "bot"], env=values, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def without_models(env: dict[str, str], tmp_path) -> dict[str, str]:
    """The settings with both models pointed at a folder that does not exist: any model load would fail."""
    return {**env, "FINDIMAGE_IMAGE_MODEL": str(tmp_path / "no-such-model"),
            "FINDIMAGE_TEXT_MODEL": str(tmp_path / "no-such-model")}


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_a_wrong_bot_token_stops_the_start_before_any_model_loads(mode, env, emu, tmp_path):
    wrong = "xoxb-1-a-token-slack-never-issued"
    socket_mode = {"SLACK_APP_TOKEN": emu.app_token} if mode == "socket" else {}
    values = process_env({**without_models(env, tmp_path), **slack_env(emu)}, SLACK_BOT_TOKEN=wrong, **socket_mode)
    started = start_bot(values, tmp_path)

    assert started.returncode == EXIT_USAGE
    assert started.stderr.splitlines() == [BOT_TOKEN_SENTENCE], "the token's sentence, not the models'"
    assert wrong not in started.stdout + started.stderr
    assert emu.api_calls("apps.connections.open") == []


@pytest.mark.parametrize("given", ["wrong", "revoked"])
def test_in_socket_mode_an_app_token_slack_refuses_stops_the_start_before_any_model_loads(given, env, emu, tmp_path):
    wrong = "xapp-1-A0APP-1-a-token-slack-never-issued"
    if given == "revoked":
        emu.inject_error("apps.connections.open", "token_revoked")
        wrong = emu.app_token
    values = process_env({**without_models(env, tmp_path), **slack_env(emu)}, SLACK_APP_TOKEN=wrong)
    started = start_bot(values, tmp_path)

    error = "invalid_auth" if given == "wrong" else "token_revoked"
    assert started.returncode == EXIT_USAGE
    assert started.stderr.splitlines() == [APP_TOKEN_SENTENCE.format(error)]
    assert wrong not in started.stdout + started.stderr


def test_in_socket_mode_the_bot_token_given_as_app_token_stops_the_start(env, emu, tmp_path):
    values = process_env({**without_models(env, tmp_path), **slack_env(emu)}, SLACK_APP_TOKEN=emu.bot_token)
    started = start_bot(values, tmp_path)

    assert started.returncode == EXIT_USAGE
    assert started.stderr.splitlines() == [
        "findimage: configuration problem: SLACK_APP_TOKEN must be an app-level token starting with xapp-."]
    assert emu.bot_token not in started.stdout + started.stderr


def test_slack_names_a_token_of_the_wrong_kind_and_the_start_says_which_setting(bot_settings, emu):
    """What Slack answers when apps.connections.open gets a bot token (the xapp- check above stops the
    usual mistake before Slack is asked)."""
    with pytest.raises(ConfigError) as refused:
        check_slack(with_settings(bot_settings, slack_app_token=emu.bot_token))

    assert refused.value.problems == [APP_TOKEN_SENTENCE.format("not_allowed_token_type").removeprefix(
        "findimage: configuration problem: ")]
    assert emu.bot_token not in str(refused.value)


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_an_unreachable_slack_stops_the_start_with_one_sentence_naming_slack_api_url(mode, env, emu, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}/api/"
    socket_mode = {"SLACK_APP_TOKEN": emu.app_token} if mode == "socket" else {}
    values = process_env({**without_models(env, tmp_path), **slack_env(emu)}, SLACK_API_URL=nowhere, **socket_mode)
    started = start_bot(values, tmp_path)

    assert started.returncode == EXIT_UNAVAILABLE
    assert started.stderr.splitlines() == [
        f"findimage: Slack is not reachable at SLACK_API_URL={nowhere} (Connection refused): check that URL, "
        "or unset SLACK_API_URL to use https://slack.com/api/."]


def test_in_http_mode_a_model_that_cannot_load_ends_the_start_with_one_sentence(env, emu, tmp_path):
    values = process_env({**without_models(env, tmp_path), **slack_env(emu)}, PORT=str(free_port()))
    started = start_bot(values, tmp_path)

    lines = started.stderr.splitlines()
    assert started.returncode == EXIT_ERROR, started.stderr
    assert lines[-1].startswith(f"findimage: Could not load the model '{tmp_path / 'no-such-model'}'")
    assert "FINDIMAGE_IMAGE_MODEL / FINDIMAGE_TEXT_MODEL" in lines[-1]
    assert "Traceback" not in started.stderr and "Worker failed to boot" not in started.stderr
    assert sum("no-such-model" in line for line in lines) == 1, "said once, by findimage bot itself"
    assert len(lines) <= 12, started.stderr
    assert emu.bot_token not in started.stdout + started.stderr
    assert emu.signing_secret not in started.stdout + started.stderr

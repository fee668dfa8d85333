"""`findimage doctor`'s Slack scopes: the ones the code requires are the ones manifest.yml asks for, and a
token without one of them is told which, and what to do."""
from __future__ import annotations

from pathlib import Path

import yaml
from slack_sdk.web import SlackResponse

from bot.doctor import REQUIRED_SCOPES, scopes_check
from findimage.errors import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[3]


def auth_test(headers: dict) -> SlackResponse:
    return SlackResponse(client=None, http_verb="POST", api_url="https://slack.com/api/auth.test", req_args={},
                         data={"ok": True, "user": "findimage"}, headers=headers, status_code=200)


def test_the_required_scopes_are_the_bot_scopes_of_the_manifest():
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert REQUIRED_SCOPES == set(manifest["oauth_config"]["scopes"]["bot"])


def test_a_token_without_a_scope_is_told_which_and_to_reinstall_the_app():
    granted = ",".join(sorted(REQUIRED_SCOPES - {"files:write", "im:write"}) + ["app_mentions:read"])
    check = scopes_check(auth_test({"x-oauth-scopes": granted}))  # HTTP/2 headers come in lower case
    assert (check.status, check.exit_code) == ("fail", EXIT_USAGE)
    assert check.detail == ("the bot token lacks files:write, im:write: add them under OAuth & Permissions and "
                            "reinstall the app.")

    assert scopes_check(auth_test({"X-OAuth-Scopes": ", ".join(REQUIRED_SCOPES)})).status == "ok"
    assert scopes_check(auth_test({})).status == "warn"

"""The bot's Slack tokens, checked with Slack before anything slow starts.

Loading the models takes a minute on a small server; a token Slack refuses must stop the start in a
second, with one sentence naming the setting to fix. The sentences never show a token.
"""
from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from findimage.config import ConfigError, Settings, public_url, require_slack
from findimage.errors import EXIT_UNAVAILABLE, FindimageError

from .slack_clients import make_web_client, quiet

BOT_TOKEN_HINT = "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page."
APP_TOKEN_HINT = ("copy the App-Level Token (xapp-...) with the connections:write scope from the app's "
                  "Basic Information page.")
# Slack's answers that mean "this token will not do" (wrong, revoked, of another kind, lacking the scope);
# any other error is Slack failing for now.
REFUSALS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                      "not_allowed_token_type", "missing_scope", "no_permission", "two_factor_setup_required"})


class SlackUnreachable(FindimageError):
    """Slack's Web API cannot be reached, or fails, right now; worth retrying later."""

    exit_code = EXIT_UNAVAILABLE


def check_slack(settings: Settings) -> None:
    """SLACK_BOT_TOKEN (auth.test) and, in Socket Mode, SLACK_APP_TOKEN (apps.connections.open, what the
    Socket Mode client calls to connect); ConfigError naming the one Slack refuses, SlackUnreachable when
    Slack cannot be asked."""
    client = quiet(make_web_client(settings))
    bot_identity(settings, client)
    if settings.slack_app_token:
        open_connection(settings, client)


def open_connection(settings: Settings, client: WebClient) -> None:
    """apps.connections.open with SLACK_APP_TOKEN, as the Socket Mode client connects (the URL it answers
    is not used); ConfigError if Slack refuses the token."""
    assert settings.slack_app_token, "only in Socket Mode"
    try:
        client.apps_connections_open(app_token=settings.slack_app_token)
    except SlackApiError as exc:
        raise _refused("SLACK_APP_TOKEN", "apps.connections.open", exc, APP_TOKEN_HINT) from None
    except OSError as exc:
        raise unreachable(settings, exc) from None


def bot_identity(settings: Settings, client: WebClient) -> SlackResponse:
    """auth.test with the bot token: the bot's user and team ids; ConfigError if Slack refuses the token."""
    try:
        return client.auth_test()
    except SlackApiError as exc:
        raise _refused("SLACK_BOT_TOKEN", "auth.test", exc, BOT_TOKEN_HINT) from None
    except OSError as exc:  # urllib's URLError (refused, DNS, TLS) and timeouts, after the client's retries
        raise unreachable(settings, exc) from None


def _refused(name: str, method: str, exc: SlackApiError, hint: str) -> FindimageError:
    error = exc.response.get("error") if exc.response is not None else None
    if error in REFUSALS:
        return ConfigError([f"Slack refused {name} ({error}): {hint}"])
    status = exc.response.status_code if exc.response is not None else "?"
    return SlackUnreachable(f"Slack could not check {name} ({method} answered {error or f'HTTP {status}'}); "
                            "try again in a few minutes (https://slack-status.com).")


def unreachable(settings: Settings, exc: OSError) -> SlackUnreachable:
    reason = getattr(exc, "reason", exc)  # URLError wraps the socket's error
    why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    url = public_url(settings.slack_api_url)
    if settings.slack_api_url.rstrip("/") != WebClient.BASE_URL.rstrip("/"):
        return SlackUnreachable(f"Slack is not reachable at SLACK_API_URL={url} ({why}): check that URL, or "
                                f"unset SLACK_API_URL to use {WebClient.BASE_URL}.")
    return SlackUnreachable(f"Slack is not reachable at {url} ({why}): check this host's network, DNS and "
                            "proxy settings (HTTPS_PROXY).")


def require_http_mode(settings: Settings) -> None:
    """HTTP mode's settings: the bot token and the signing secret (ConfigError naming what is missing)."""
    require_slack(settings)
    signing_secret(settings)


def signing_secret(settings: Settings) -> str:
    """SLACK_SIGNING_SECRET; ConfigError without it (never an empty key, which anyone could sign with)."""
    if not settings.slack_signing_secret:
        raise ConfigError(["SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request from Slack with it "
                           "(Basic Information > App Credentials > Signing Secret)."])
    return settings.slack_signing_secret

"""The Slack side of `findimage doctor`: the bot token, its scopes, how Slack reaches the bot, its channels.

The tokens are checked as the bot checks them at start (bot.credentials); no detail shows a token.
"""
from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from findimage.config import Settings, public_url
from findimage.doctor import Check, fail, failed, guarded, ok, skipped, warn
from findimage.errors import FindimageError

from .credentials import APP_TOKEN_HINT, BOT_TOKEN_HINT, bot_identity, open_connection, unreachable
from .slack_clients import make_web_client, quiet

# The bot scopes manifest.yml asks for, which the bot's calls need (tests/unit/bot/test_doctor_scopes.py holds
# the two lists equal).
REQUIRED_SCOPES = frozenset({
    "commands", "chat:write", "files:read", "files:write", "channels:history", "groups:history", "channels:read",
    "groups:read", "im:read", "mpim:read", "users:read", "im:write"})
CHECKS = ("slack token", "slack scopes", "slack mode", "channels")
CHANNEL_PAGE, CHANNEL_PAGES = 200, 5  # users.conversations: Slack recommends pages of at most 200
SHOWN_CHANNELS = 10
NEEDS_TOKEN = "needs a working SLACK_BOT_TOKEN (see above)"


def slack_checks(settings: Settings) -> list[Check]:
    """Each of CHECKS, in order; the scopes and the channels only with a bot token Slack accepts."""
    client = quiet(make_web_client(settings))
    identity: SlackResponse | None = None
    if not settings.slack_bot_token:
        token = fail("slack token", f"SLACK_BOT_TOKEN is not set: {BOT_TOKEN_HINT}")
    else:
        try:
            identity = bot_identity(settings, client)
        except FindimageError as exc:
            token = failed("slack token", exc)
        else:
            token = ok("slack token", f"the bot @{identity.get('user')} ({identity.get('user_id')}) in the workspace "
                                      f"{identity.get('team')} ({identity.get('team_id')}, {identity.get('url')})")
    checks = [token]
    checks += [scopes_check(identity)] if identity is not None else skipped(("slack scopes",), NEEDS_TOKEN)
    checks += guarded("slack mode", lambda: mode_check(settings, client))
    if identity is None:
        return checks + skipped(("channels",), NEEDS_TOKEN)
    answered = identity
    return checks + guarded("channels", lambda: channels_check(settings, client, answered))


def scopes_check(identity: SlackResponse) -> Check:
    """The scopes Slack granted the bot token (auth.test's X-OAuth-Scopes header) against REQUIRED_SCOPES."""
    granted = next((value for name, value in identity.headers.items() if name.lower() == "x-oauth-scopes"), None)
    if not isinstance(granted, str):
        return warn("slack scopes", "Slack did not say which scopes the bot token has (no X-OAuth-Scopes header): "
                                    "compare the app's OAuth & Permissions page with manifest.yml.")
    missing = sorted(REQUIRED_SCOPES - {scope.strip() for scope in granted.split(",")})
    if missing:
        which = "it" if len(missing) == 1 else "them"
        return fail("slack scopes", f"the bot token lacks {', '.join(missing)}: add {which} under OAuth & Permissions "
                                    "and reinstall the app.")
    return ok("slack scopes", f"the bot token has all {len(REQUIRED_SCOPES)} scopes manifest.yml asks for")


def mode_check(settings: Settings, client: WebClient) -> Check:
    """Socket Mode (SLACK_APP_TOKEN set): Slack opens a connection for the app token (not kept). HTTP mode:
    the signing secret is set, and whether FINDIMAGE_PUBLIC_BASE_URL shows matches as links."""
    if settings.slack_app_token:
        if not settings.slack_app_token.startswith("xapp-"):
            return fail("slack mode", f"SLACK_APP_TOKEN must be an app-level token starting with xapp-: "
                                      f"{APP_TOKEN_HINT}")
        open_connection(settings, client)
        ignored = "; FINDIMAGE_PUBLIC_BASE_URL is ignored in Socket Mode" if settings.public_base_url else ""
        return ok("slack mode", f"Socket Mode: Slack accepts SLACK_APP_TOKEN (apps.connections.open){ignored}")
    if not settings.slack_signing_secret:
        return fail("slack mode", "HTTP mode (SLACK_APP_TOKEN is not set) needs SLACK_SIGNING_SECRET: copy the "
                                  "Signing Secret from the app's Basic Information page, or set SLACK_APP_TOKEN for "
                                  "Socket Mode.")
    links = (f"FINDIMAGE_PUBLIC_BASE_URL={public_url(settings.public_base_url)}: matches are shown as signed links "
             "to the bot's /images/" if settings.public_base_url else
             "FINDIMAGE_PUBLIC_BASE_URL is not set: matches are uploaded to Slack")
    return ok("slack mode", f"HTTP mode: SLACK_SIGNING_SECRET is set; {links}")


def channels_check(settings: Settings, client: WebClient, identity: SlackResponse) -> Check:
    """The public and private channels the bot is a member of (users.conversations, at most CHANNEL_PAGES
    pages), and FINDIMAGE_CHANNELS, where set, against them."""
    invite = f"/invite @{identity.get('user')}"
    names: dict[str, str] = {}
    cursor, complete = "", False
    for _ in range(CHANNEL_PAGES):
        try:
            page = client.users_conversations(types="public_channel,private_channel", exclude_archived=True,
                                              limit=CHANNEL_PAGE, cursor=cursor or None)
        except SlackApiError as exc:
            answer = exc.response if exc.response is not None else {}
            needed = f", it needs {answer.get('needed')}" if answer.get("needed") else ""
            return warn("channels", f"Slack did not list the bot's channels (users.conversations answered "
                                    f"{answer.get('error')}{needed}).")
        except OSError as exc:
            raise unreachable(settings, exc) from None
        names.update({c["id"]: c.get("name") or c["id"] for c in page.get("channels") or []})
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or ""
        if not cursor:
            complete = True
            break
    if not names:
        return warn("channels", f"the bot is a member of no channel: invite it with {invite} in each channel where "
                                "it should answer.")
    count = f"{len(names):,}" if complete else f"at least {len(names):,}"
    listed = ", ".join(f"#{name}" for name in sorted(names.values())[:SHOWN_CHANNELS]) + (
        ", ..." if len(names) > SHOWN_CHANNELS else "")
    found = f"the bot is a member of {count} channel(s): {listed}"
    # Direct messages are not listed here; a bot is part of any it was written in.
    allowed = [channel for channel in settings.channels if not channel.startswith("D")]
    outside = [channel for channel in allowed if channel not in names]
    if outside and complete:
        return warn("channels", f"{found}; FINDIMAGE_CHANNELS names {', '.join(outside)}, where it is not: invite it "
                                f"there with {invite}, or remove them from FINDIMAGE_CHANNELS.")
    if outside:
        found += f"; {len(outside)} of FINDIMAGE_CHANNELS are not among those listed"
    elif settings.channels:
        found += f"; FINDIMAGE_CHANNELS limits its answers to {len(settings.channels)} channel(s) among them"
    return ok("channels", found)

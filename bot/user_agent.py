"""The headers of findimage's Slack clients: a User-Agent that names findimage and its version first."""
from __future__ import annotations

from slack_sdk.web.internal_utils import get_user_agent

from findimage import USER_AGENT


class _NamedAgent(dict):
    """Headers whose User-Agent keeps findimage's token whoever sets it.

    Bolt makes a client for each request from our client's headers dict (the same dict, not a copy), and
    slack_sdk's constructor writes its own User-Agent into it: user_agent_prefix alone would be lost on
    every call a listener makes, and on ours too after the first request.
    """

    def __setitem__(self, key: str, value: str) -> None:
        if key.lower() == "user-agent" and not value.startswith(USER_AGENT + " "):
            value = f"{USER_AGENT} {value}"
        super().__setitem__(key, value)


def slack_headers() -> dict[str, str]:
    """A new headers dict for one WebClient (never empty: slack_sdk replaces an empty one)."""
    return _NamedAgent({"User-Agent": get_user_agent(USER_AGENT)})

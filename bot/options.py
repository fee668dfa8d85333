"""What a user typed after `/findimage`: a word asking for help, or a query, which findimage.query reads
through Slack's door (`IN_SLACK`): the command's options (`k=N`, `in:<folder>`, `after:<date>`, `before:<date>`),
the text as Slack sends it, and what was typed shown in a sentence as every text from outside is
(bot.untrusted)."""
from __future__ import annotations

from findimage.query import command_door

from .untrusted import shown

HELP_WORDS = {"", "help", "-h", "--help", "?", "hilfe", "aide", "ayuda"}


def unescape_slack(text: str) -> str:
    """Slack sends &, < and > escaped in slash command text; the model should see what the user typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


IN_SLACK = command_door(shown, unescape_slack)  # the command's, and its buttons' (they carry its options)


def wants_help(raw: str | None) -> bool:
    return " ".join((raw or "").split()).lower() in HELP_WORDS

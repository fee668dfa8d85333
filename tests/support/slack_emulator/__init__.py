"""A local Slack emulator for end-to-end tests of the findimage bot.

It runs the real Web API shapes, file hosting, response URLs and Socket Mode on
127.0.0.1, and can play Slack calling the app (signed slash commands, Events API).
See ``server.SlackEmulator`` for the entry point.
"""

from .driver import HttpDelivery, slack_signature
from .records import (
    ApiCall,
    Download,
    Message,
    PublishedView,
    ResponsePost,
    SocketAck,
    Upload,
    UploadedFile,
    visible_text,
)
from .seeding import SeededHistory
from .server import DEFAULT_BOT_SCOPES, SlackEmulator
from .web_api import SlackApiError

__all__ = [
    "ApiCall",
    "DEFAULT_BOT_SCOPES",
    "Download",
    "HttpDelivery",
    "Message",
    "PublishedView",
    "ResponsePost",
    "SeededHistory",
    "SlackApiError",
    "SlackEmulator",
    "SocketAck",
    "Upload",
    "UploadedFile",
    "slack_signature",
    "visible_text",
]

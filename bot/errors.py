"""Every failure becomes a short sentence for the person who asked; the details go to the log."""
from __future__ import annotations

import logging
import uuid

from slack_sdk.errors import SlackApiError

from findimage.errors import (
    AccessDenied,
    BackendUnavailable,
    IndexMissing,
    LicenseRefused,
    ModelError,
    ModelMismatch,
    StoreError,
)
from findimage.imaging import ImageError
from findimage.query import QueryError

from .slack_files import DownloadError
from .untrusted import escape, shown

log = logging.getLogger(__name__)

ASK_ADMIN = "tell whoever runs findimage; the details are in the bot's log"
CHANNEL_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
FILE_ERRORS = {"file_not_found", "file_deleted"}  # files.info: deleted, or not visible to the bot
FILE_GONE = ("That file was deleted or I cannot see it, so I could not compare it; post the image again in a "
             "channel I am a member of and I will look.")


def user_message(exc: BaseException, subject: str | None = None) -> str:
    """What went wrong and what to do, in one or two sentences of mrkdwn (user text escaped); logs the details."""
    if isinstance(exc, DownloadError):  # its sentences are mrkdwn already, names escaped
        log.info("download refused: %s", exc)
        return str(exc)
    if isinstance(exc, QueryError):
        log.info("query refused: %s", exc)
        return escape(str(exc))
    if isinstance(exc, ImageError):
        log.info("unreadable image %s: %s", subject, exc)
        what = shown(subject) if subject else "that file"
        return (f"I could not read {what} as a picture ({escape(str(exc))}). "
                "Post it as a JPEG or PNG and I will look again.")
    if isinstance(exc, IndexMissing):
        log.error("no index: %s", exc)
        return ("The archive is not indexed yet, so there is nothing to search. Whoever runs findimage needs to "
                "run `findimage index` (or wait for the scheduled indexer).")
    if isinstance(exc, AccessDenied):
        log.error("store refused the bot's credentials: %s", exc)
        return f"The archive's search store refused my credentials, so I could not search; {ASK_ADMIN}."
    if isinstance(exc, (BackendUnavailable, StoreError)):
        log.error("store failed: %s", exc)
        return ("The archive's search store is not reachable right now, so I could not search. "
                f"Please try again in a few minutes; if it keeps failing, {ASK_ADMIN}.")
    if isinstance(exc, ModelMismatch):
        log.error("model mismatch: %s", exc)
        return ("The archive was indexed with a different image model than the one I use now, so I cannot "
                "compare images. Whoever runs findimage needs to run `findimage index --full`.")
    if isinstance(exc, LicenseRefused):  # with FINDIMAGE_TEXT_FALLBACK=off nothing else answers text queries
        log.error("text model refused: %s", exc)
        return ("I could not search by text because Elasticsearch's license does not allow its text model; "
                f"search with an example image meanwhile, and {ASK_ADMIN}.")
    if isinstance(exc, ModelError):
        log.error("model failed: %s", exc)
        which = "image" if subject else "text"  # image answers name their file; text queries have none
        return (f"The {which} model failed on this query, so I could not search. Please try again; if it keeps "
                f"failing, {ASK_ADMIN}.")
    if isinstance(exc, SlackApiError) and exc.response.get("error") in FILE_ERRORS:
        log.info("file %s not available: %s", subject, exc.response.get("error"))
        return FILE_GONE
    if isinstance(exc, SlackApiError) and exc.response.get("error") in CHANNEL_ERRORS:
        log.warning("cannot post in the channel: %s", exc.response.get("error"))
        return ("I cannot post in this channel: invite me with `/invite @findimage` (or use `/findimage` in a "
                "channel I am a member of) and try again.")
    reference = uuid.uuid4().hex[:8]
    log.error("unexpected failure (reference %s)", reference, exc_info=exc)
    return (f"Something went wrong while searching (reference `{reference}`). Please try again; if it keeps "
            f"failing, {ASK_ADMIN}.")

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
from findimage.i18n import N_, Language
from findimage.imaging import ImageError
from findimage.query import QueryError

from .slack_files import DownloadError
from .untrusted import escape, shown

log = logging.getLogger(__name__)

CHANNEL_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
FILE_ERRORS = {"file_not_found", "file_deleted"}  # files.info: deleted, or not visible to the bot
FILE_GONE = N_("That file was deleted or I cannot see it, so I could not compare it; post the image again in a "
               "channel I am a member of and I will look.")


def user_message(exc: BaseException, said: Language, subject: str | None = None) -> str:
    """What went wrong and what to do, in one or two sentences of mrkdwn (user text escaped) in the asker's
    language; logs the details (in English)."""
    if isinstance(exc, DownloadError):  # its sentences are mrkdwn already, names escaped
        log.info("download refused: %s", exc)
        return exc.said_in(said)
    if isinstance(exc, QueryError):
        log.info("query refused: %s", exc)
        return escape(exc.said_in(said))
    if isinstance(exc, ImageError):
        log.info("unreadable image %s: %s", subject, exc)
        if subject:
            return said._("I could not read {name} as a picture ({reason}). Post it as a JPEG or PNG and I will "
                          "look again.", name=shown(subject), reason=escape(str(exc)))
        return said._("I could not read that file as a picture ({reason}). Post it as a JPEG or PNG and I will "
                      "look again.", reason=escape(str(exc)))
    if isinstance(exc, IndexMissing):
        log.error("no index: %s", exc)
        return said._("The archive is not indexed yet, so there is nothing to search. Whoever runs findimage needs "
                      "to run `findimage index` (or wait for the scheduled indexer).")
    if isinstance(exc, AccessDenied):
        log.error("store refused the bot's credentials: %s", exc)
        return said._("The archive's search store refused my credentials, so I could not search; tell whoever "
                      "runs findimage; the details are in the bot's log.")
    if isinstance(exc, (BackendUnavailable, StoreError)):
        log.error("store failed: %s", exc)
        return said._("The archive's search store is not reachable right now, so I could not search. Please try "
                      "again in a few minutes; if it keeps failing, tell whoever runs findimage; the details are "
                      "in the bot's log.")
    if isinstance(exc, ModelMismatch):
        log.error("model mismatch: %s", exc)
        return said._("The archive was indexed with a different image model than the one I use now, so I cannot "
                      "compare images. Whoever runs findimage needs to run `findimage index --full`.")
    if isinstance(exc, LicenseRefused):  # with FINDIMAGE_TEXT_FALLBACK=off nothing else answers text queries
        log.error("text model refused: %s", exc)
        return said._("I could not search by text because Elasticsearch's license does not allow its text model; "
                      "search with an example image meanwhile, and tell whoever runs findimage; the details are "
                      "in the bot's log.")
    if isinstance(exc, ModelError):
        log.error("model failed: %s", exc)
        if subject:  # image answers name their file; text queries have none
            return said._("The image model failed on this query, so I could not search. Please try again; if it "
                          "keeps failing, tell whoever runs findimage; the details are in the bot's log.")
        return said._("The text model failed on this query, so I could not search. Please try again; if it keeps "
                      "failing, tell whoever runs findimage; the details are in the bot's log.")
    if isinstance(exc, SlackApiError) and exc.response.get("error") in FILE_ERRORS:
        log.info("file %s not available: %s", subject, exc.response.get("error"))
        return said._(FILE_GONE)
    if isinstance(exc, SlackApiError) and exc.response.get("error") in CHANNEL_ERRORS:
        log.warning("cannot post in the channel: %s", exc.response.get("error"))
        return said._("I cannot post in this channel: invite me with `/invite @findimage` (or use `/findimage` in "
                      "a channel I am a member of) and try again.")
    reference = uuid.uuid4().hex[:8]
    log.error("unexpected failure (reference %s)", reference, exc_info=exc)
    return said._("Something went wrong while searching (reference `{reference}`). Please try again; if it keeps "
                  "failing, tell whoever runs findimage; the details are in the bot's log.", reference=reference)

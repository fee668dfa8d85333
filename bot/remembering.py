"""Remembering the images posted in a channel: one posting at a time into findimage.remembered, from a
message event or a backfill page (bot/backfill.py), always after the ack.

An image is downloaded with the bot token, decoded under the query limits, fingerprinted and embedded; its
vector, fingerprint (a repost in the channel is recognised by it), file name and title words and date (the
message time) are stored with where it was posted, and then (with
FINDIMAGE_OCR) the text read in it, in a child process as the indexer reads it. Its bytes are not kept.
What cannot be remembered (a broken file, a PDF) is skipped and counted, never retried in a loop.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import Settings
from findimage.duplicates import picture_fingerprint
from findimage.imaging import prepare_bytes
from findimage.models.base import ImageEmbedder
from findimage.models.reader_process import ReaderProcess, ReadingLimits
from findimage.records import ImageDoc, Posted, posted_path
from findimage.remembered import Remembered
from findimage.visibility import Place, Purpose

from . import slack_files
from .channels import ChannelPolicy, is_from_another_app

log = logging.getLogger(__name__)

# New posts and the backfill remember the same messages: files of messages like these only.
REMEMBERED_SUBTYPES = {None, "file_share", "thread_broadcast"}
GONE_MODES = ("tombstone", "hidden_by_limit")  # a deleted file's placeholder; one past a free plan's limit


def message_date(ts: str) -> str:
    """The message time as the stores keep dates: naive local ISO 8601 (findimage.dates)."""
    return datetime.fromtimestamp(float(ts)).isoformat(timespec="seconds")


def is_person_message(message: dict, answered_apps: frozenset[str]) -> bool:
    """Posted by a person (or an app the workspace lets the bot answer): not the bot's own answers, which
    are archive images, nor another app's."""
    return message.get("subtype") in REMEMBERED_SUBTYPES and not is_from_another_app(message, answered_apps)


@dataclass
class Outcome:
    images: int = 0
    failed: int = 0


class Rememberer:
    def __init__(self, settings: Settings, remembered: Remembered, embedder: ImageEmbedder, policy: ChannelPolicy):
        self.settings = settings
        self.remembered = remembered
        self.embedder = embedder
        self.policy = policy
        self._decodes = threading.BoundedSemaphore(1)  # beside the queries' two: memory stays bounded
        # One reader child for the process, started on the first image, one picture at a time.
        self._reader = ReaderProcess(ReadingLimits.of(settings)) if settings.ocr else None
        self._reading = threading.Lock()

    def remember_message(self, client: WebClient, channel: str, message: dict) -> Outcome:
        """The images of one message, each as a posting of `channel` (skipped if the channel was forgotten)."""
        outcome = Outcome()
        if not self.may_remember(client, channel):
            return outcome
        files, ts = message.get("files") or [], str(message.get("ts") or "")
        # Deleted in Slack (the file, or this message) while this message waited: not downloaded at all.
        gone = self.remembered.deleted([Posted(channel, f.get("id", ""), ts, "") for f in files])
        for file in files:
            if Posted(channel, file.get("id", ""), ts, "").image_id in gone:
                continue
            file = self._completed(client, file)
            if file is None or not slack_files.is_image_file(file) or file.get("mode") in GONE_MODES:
                continue
            try:
                self._remember_file(client, channel, message, file)
                outcome.images += 1
            except Exception as exc:  # one bad file must not stop the channel's other images
                log.warning("could not remember %s posted in %s: %s", file.get("id"), channel, exc)
                outcome.failed += 1
        return outcome

    def may_remember(self, client: WebClient, channel: str) -> bool:
        """Whether the channel's posts are remembered now: not once it is forgotten, off the allowlist,
        shared with another organisation or archived (findimage.visibility decides)."""
        return self.remembered.active(channel) and not self.policy.sight(
            client, Purpose.REMEMBER, Place.of(channel), None).refused

    def _completed(self, client: WebClient, file: dict) -> dict | None:
        if not slack_files.needs_file_info(file):
            return file
        try:
            return client.files_info(file=file["id"])["file"]
        except SlackApiError as exc:
            log.info("files.info for %s failed (%s); not remembered", file.get("id"), exc.response.get("error"))
            return None

    def _remember_file(self, client: WebClient, channel: str, message: dict, file: dict) -> None:
        if client.token is None:
            raise RuntimeError("the Slack client has no bot token to download images with")
        data = slack_files.fetch(file, client.token, self.settings.max_image_bytes, self.settings.slack_api_url)
        limits = self.settings.query_images
        with self._decodes:
            prepared = prepare_bytes(data, max_pixels=limits.max_pixels, budget=limits.budget)
            image = self.embedder.shrink(prepared.image)
            made = picture_fingerprint(prepared.image, image).to_string()  # as the indexer makes it
        vector = self.embedder.embed_images([image])[0]
        ts = str(message.get("ts") or file.get("timestamp") or time.time())
        name = str(file.get("name") or file.get("title") or file["id"]).replace("/", "_")
        title = str(file.get("title") or name)
        posted = Posted(channel, file["id"], ts, str(message.get("user") or file.get("user") or ""),
                        str(file.get("permalink") or ""), title)
        # The title's words join the file name's as a folder of its own (path words are searched).
        label = title.replace("/", "_") if title != name else ""
        path = posted_path(channel, file["id"], f"{label}/{name}" if label else name)
        doc = ImageDoc(posted.image_id, name, path, vector, hashlib.sha256(data).hexdigest(), len(data), float(ts),
                       prepared.width, prepared.height, time.time(), self.embedder.model_id, message_date(ts), "slack",
                       made)
        self.remembered.add([(doc, posted)], self.embedder.model_id)  # searchable by picture and name now
        if self._reader is not None:
            with self._reading:
                read = self._reader.read(data)  # a failure is recorded as such, never raised
            if read.state == "timed_out":  # its bytes are not kept: nothing could read it again later
                read = replace(read, state="failed")
            self.remembered.store.set_texts([(doc.image_id, doc.sha256, read)])

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

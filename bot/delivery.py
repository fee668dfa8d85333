"""Where and how an answer reaches Slack.

Targets say *where*: a slash command answers in its channel (problems privately, through the
response_url), a posted image answers in its message's thread. Presenters say *how the images are
shown*: uploaded as downscaled copies (default, one files_upload_v2 call), or as Block Kit image
blocks with signed links to the bot's own server (HTTP mode with FINDIMAGE_PUBLIC_BASE_URL).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slack_sdk import WebClient

from findimage.config import DecodeLimits
from findimage.i18n import N_
from findimage.imaging import ImageError, archive_thumbnail
from findimage.search import servable

from .image_links import ImageLinks
from .replies import SECTION_CHARS, Answer, answers_text, button_blocks, file_title, image_blocks, mrkdwn_section
from .untrusted import fit, one_line

log = logging.getLogger(__name__)
THUMBNAIL_LONG_SIDE = 1024
MAX_BLOCKS_PER_MESSAGE = 50  # Slack's limit for one message
MAX_FILES_PER_UPLOAD = 10  # Slack shows at most 10 files in one message
BUTTONS_TEXT = N_("More like one of these, or more of the same?")  # the notification text of the buttons


def chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)] or [[]]


class Target(Protocol):
    """Where an answer goes, and through which client: CommandTarget, InteractionTarget or ThreadTarget."""

    @property
    def client(self) -> WebClient: ...

    @property
    def channel_id(self) -> str | None: ...

    def upload(self, files: list[dict], comment: str | None) -> None: ...

    def post(self, text: str, blocks: list[dict] | None = None) -> None: ...

    def tell(self, text: str) -> None:
        """Problems and refusals, only to the person who asked wherever the target allows it."""
        ...


class Presenter(Protocol):
    """How matches are shown: UploadPresenter or LinkPresenter."""

    def show(self, answers: list[Answer], target: Target) -> None: ...


class ResponseUrlFailed(Exception):
    """Slack did not accept a post to the command's response_url (expired after 30 minutes, or used 5 times)."""


@dataclass
class CommandTarget:
    """A `/findimage` in a channel: results visible to all in that channel, problems only to the requester."""

    client: WebClient
    respond: Callable
    # An interaction's payload may name neither (its response_url reaches the user all the same).
    channel_id: str | None
    user_id: str | None

    def upload(self, files: list[dict], comment: str | None) -> None:
        self.client.files_upload_v2(file_uploads=files, channel=self.channel_id, initial_comment=comment)

    def post(self, text: str, blocks: list[dict] | None = None) -> None:
        # response_url posts work in every channel the command was used in, member or not
        self._respond(text=text, blocks=blocks, response_type="in_channel")

    def tell(self, text: str) -> None:
        try:
            self._respond(text=text, response_type="ephemeral")
        except ResponseUrlFailed as exc:  # expired or used up: the Web API still reaches the user
            if self.channel_id is None or self.user_id is None:
                raise
            log.warning("%s; answering with chat.postEphemeral", exc)
            self.client.chat_postEphemeral(channel=self.channel_id, user=self.user_id, text=text)

    def _respond(self, **message: Any) -> None:
        answer = self.respond(replace_original=False, **message)
        if answer is not None and answer.status_code != 200:
            raise ResponseUrlFailed(f"response_url answered {answer.status_code}: {answer.body[:200]}")


@dataclass
class InteractionTarget(CommandTarget):
    """A button or shortcut: answers where it was used (in its thread, if any); problems only to the user.

    Without a thread, results go through the interaction's response_url like a command's (it works in
    channels the bot is not a member of); in a thread they are posted there with the Web API.
    """

    thread_ts: str | None = None

    def upload(self, files: list[dict], comment: str | None) -> None:
        self.client.files_upload_v2(file_uploads=files, channel=self.channel_id, thread_ts=self.thread_ts,
                                    initial_comment=comment)

    def post(self, text: str, blocks: list[dict] | None = None) -> None:
        if self.thread_ts is None or self.channel_id is None:
            super().post(text, blocks)
            return
        self.client.chat_postMessage(channel=self.channel_id, thread_ts=self.thread_ts, text=text, blocks=blocks)


@dataclass
class ThreadTarget:
    """A posted image: everything goes into that message's thread (or, without thread_ts, into the
    conversation itself, as the Home tab's examples are answered in the person's direct messages)."""

    client: WebClient
    channel_id: str
    thread_ts: str | None

    def upload(self, files: list[dict], comment: str | None) -> None:
        self.client.files_upload_v2(file_uploads=files, channel=self.channel_id, thread_ts=self.thread_ts,
                                    initial_comment=comment)

    def post(self, text: str, blocks: list[dict] | None = None) -> None:
        self.client.chat_postMessage(channel=self.channel_id, thread_ts=self.thread_ts, text=text, blocks=blocks)

    def tell(self, text: str) -> None:
        self.post(text)


class UploadPresenter:
    """Matches as downscaled JPEG copies (long side <= 1024 px), uploaded with the ranked list as comment."""

    def __init__(self, archive: Path, limits: DecodeLimits):
        self.archive = Path(archive)
        self.limits = limits

    def show(self, answers: list[Answer], target: Target) -> None:
        files = [upload for answer in answers for upload in self._thumbnails(answer)]
        text = answers_text(answers)
        if not files:
            if any(m.posted for a in answers for m in a.matches):  # only remembered images: all by reference
                target.post(fit(text, SECTION_CHARS),
                            [mrkdwn_section(text), *button_blocks(answers)][:MAX_BLOCKS_PER_MESSAGE])
            else:
                target.post(text)
            return
        # One files_upload_v2 call per message; more than Slack's 10 files per message continue in a second.
        for number, batch in enumerate(chunks(files, MAX_FILES_PER_UPLOAD)):
            target.upload(batch, text if number == 0 else None)
        # An upload cannot carry buttons: they follow in a message of their own, in the same place.
        buttons = button_blocks(answers)
        if buttons:
            target.post(answers[0].said._(BUTTONS_TEXT), buttons)  # one request's answers: one asker

    def _thumbnails(self, answer: Answer) -> list[dict]:
        uploads = []
        for rank, match in answer.ranked():
            if match.posted is not None:  # Slack's own file: shown by reference (button_blocks), never uploaded
                continue
            try:
                data = archive_thumbnail(self.archive, match.relative_path, match.indexed, THUMBNAIL_LONG_SIDE,
                                         self.limits)
            except ImageError as exc:  # deleted, changed or swapped for a link since the last indexing pass
                log.warning("cannot show %s: %s", match.relative_path, exc)
                answer.missing.add(match.image_id)
                continue
            stem = one_line(Path(match.relative_path).stem)  # a file's name and title are plain text in Slack
            uploads.append({"file": data, "filename": f"{rank}-{stem}.jpg", "alt_txt": one_line(match.relative_path),
                            "title": file_title(rank, match, match.image_id in answer.exact, answer.said)})
        return uploads


class LinkPresenter:
    """Matches as Block Kit image blocks whose signed URLs the bot's own web server answers."""

    def __init__(self, links: ImageLinks, archive: Path):
        self.links = links
        self.archive = Path(archive)

    def show(self, answers: list[Answer], target: Target) -> None:
        for answer in answers:
            answer.missing.update(m.image_id for m in answer.matches if not servable(self.archive, m))
        text = answers_text(answers)
        for batch in chunks(image_blocks(answers, self.links.url_for), MAX_BLOCKS_PER_MESSAGE):
            target.post(fit(text, SECTION_CHARS), batch)  # text is the notification / fallback of the blocks

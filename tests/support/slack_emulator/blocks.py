"""Block Kit checks: what Slack refuses with ``invalid_blocks`` (chat.postMessage, views.publish, response_url).

* actions blocks: 1 to 25 elements, distinct action_ids, button values up to 2000 characters, texts up to 75.
* image blocks and image elements (section accessories, context elements),
  https://docs.slack.dev/reference/block-kit/blocks/image-block: alt_text required (up to 2000 characters),
  "You must provide either an image_url or slack_file" (image_url up to 3000 characters), title plain_text.
* the slack_file object, https://docs.slack.dev/reference/block-kit/composition-objects/slack-file-object: "you
  must provide either the URL or ID [...] If both are provided then the payload will be rejected", the file must
  be a png, jpg, jpeg or gif image the poster has access to. Slack answers a file it will not show with
  ``invalid slack file [json-pointer:/blocks/0/slack_file]`` (python-slack-sdk issue #1797, bolt-python issue
  #1251: a file uploaded without sharing it) and a URL it does not take with
  ``invalid_url [json-pointer:/blocks/0/slack_file.url]`` (bolt-python issue #1016).

Errors come as Slack sends them: ``errors`` and ``response_metadata.messages`` ("[ERROR] <what> [json-pointer:
<where>]"). The wording of the image block's own errors (missing alt_text, both or neither source) follows
Slack's "must provide a string" / "must define either" messages; emulator choice, as the exact texts are not
documented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .web_api import SlackApiError

MAX_BUTTON_VALUE = 2000
MAX_BUTTON_TEXT = 75
MAX_ACTIONS_ELEMENTS = 25
MAX_ALT_TEXT = 2000
MAX_IMAGE_URL = 3000
MAX_TITLE = 2000
MAX_BLOCK_ID = 255
SLACK_FILE_IMAGE_TYPES = ("png", "jpg", "jpeg", "gif")

#: ``slack_file -> (problem, field)``: None when the file may be shown, else e.g. ("invalid slack file", "")
SlackFileCheck = Callable[[dict], "tuple | None"]


def _check_actions(block: dict) -> None:
    elements = block.get("elements") or []
    action_ids = [e.get("action_id") for e in elements if e.get("action_id")]
    if not elements or len(elements) > MAX_ACTIONS_ELEMENTS or len(action_ids) != len(set(action_ids)):
        raise SlackApiError("invalid_blocks")
    for element in elements:
        if element.get("type") == "button" and (
            len(str(element.get("value", ""))) > MAX_BUTTON_VALUE
            or len((element.get("text") or {}).get("text", "")) > MAX_BUTTON_TEXT
        ):
            raise SlackApiError("invalid_blocks")


def _image_problems(image: dict, where: str, slack_file_check: SlackFileCheck | None, *, block: bool) -> list:
    problems = []
    alt_text = image.get("alt_text")
    if not isinstance(alt_text, str) or not alt_text:
        problems.append(f"must provide a string [json-pointer:{where}/alt_text]")
    elif len(alt_text) > MAX_ALT_TEXT:
        problems.append(f"must be less than {MAX_ALT_TEXT + 1} characters [json-pointer:{where}/alt_text]")
    has_url, has_file = "image_url" in image, "slack_file" in image
    if has_url == has_file:
        problems.append(f"must define either `image_url` or `slack_file` [json-pointer:{where}]")
    elif has_url and (not isinstance(image["image_url"], str) or not image["image_url"]
                      or len(image["image_url"]) > MAX_IMAGE_URL):
        problems.append(f"invalid_url [json-pointer:{where}/image_url]")
    elif has_file:
        ref = image["slack_file"]
        if not isinstance(ref, dict) or ("url" in ref) == ("id" in ref):
            problems.append(f"must define either `url` or `id` [json-pointer:{where}/slack_file]")
        elif slack_file_check is not None:
            refused = slack_file_check(ref)
            if refused:
                problem, field = refused
                problems.append(f"{problem} [json-pointer:{where}/slack_file{field}]")
    title = image.get("title")
    if block and title is not None and (not isinstance(title, dict) or title.get("type") != "plain_text"
                                        or len(str(title.get("text", ""))) > MAX_TITLE):
        problems.append(f"must be a plain_text text object [json-pointer:{where}/title]")
    return problems


def _images(block: dict, where: str) -> list:
    """(image, its json-pointer, is it a block) for the image block itself or the image elements inside it."""
    if block.get("type") == "image":
        return [(block, where, True)]
    found = []
    accessory = block.get("accessory")
    if block.get("type") == "section" and isinstance(accessory, dict) and accessory.get("type") == "image":
        found.append((accessory, f"{where}/accessory", False))
    if block.get("type") == "context":
        found += [(e, f"{where}/elements/{j}", False) for j, e in enumerate(block.get("elements") or [])
                  if isinstance(e, dict) and e.get("type") == "image"]
    return found


def check_blocks(blocks: Any, slack_file_check: SlackFileCheck | None = None) -> None:
    """Raise ``SlackApiError("invalid_blocks", ...)`` as Slack would for ``blocks``; ``slack_file_check`` says
    whether a slack_file may be shown (the emulator's files: ``SlackEmulator._slack_file_problem``)."""
    problems = []
    for i, block in enumerate(blocks or []):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "actions":
            _check_actions(block)
        if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID:
            problems.append(f"must be less than {MAX_BLOCK_ID + 1} characters [json-pointer:/blocks/{i}/block_id]")
        for image, where, is_block in _images(block, f"/blocks/{i}"):
            problems += _image_problems(image, where, slack_file_check, block=is_block)
    if problems:
        raise SlackApiError("invalid_blocks", errors=problems,
                            response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})


class BlocksMixin:
    def _blocks_accepted(self, blocks: Any) -> bool:
        """Whether a response_url post's blocks pass (it answers 400 invalid_blocks otherwise)."""
        try:
            check_blocks(blocks if isinstance(blocks, list) else None, self._slack_file_problem)
        except SlackApiError:
            return False
        return True

    def _slack_file_problem(self, ref: dict) -> tuple | None:
        """Whether Slack would show the file ``ref`` ({"id"} or {"url"}) in a message the bot posts: it must
        exist, not be deleted or hidden, be a png/jpg/gif image and be shared in a conversation the bot can see
        (a public channel or one it is in; emulator choice for "the user posting these blocks must have access
        to this file")."""
        if "id" in ref:
            file_id: str | None = str(ref["id"])
        else:  # "This URL can be the url_private or the permalink of the Slack file."
            with self._lock:
                known = list(self._files)
            file_id = next((f for f in known if str(ref["url"]) in self._file_urls(f)), None)
            if file_id is None:
                return "invalid_url", ".url"
        with self._lock:
            stored = self._files.get(file_id)
            if stored is None or stored.get("gone"):
                return "invalid slack file", ""
            channels = list(stored["channels"])
            filetype = stored["filetype"]
        if filetype not in SLACK_FILE_IMAGE_TYPES:
            return "invalid slack file", ""
        for channel in channels:
            conversation = self._conversation(channel)
            if not conversation["deleted"] and (conversation["member"] or conversation["kind"] == "public"):
                return None
        return "invalid slack file", ""

    def _file_urls(self, file_id: str) -> tuple:
        obj = self.file_object(file_id)
        return obj["url_private"], obj["permalink"]

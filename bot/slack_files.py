"""Fetch an image a user posted from Slack: with the bot token, within a size limit, never an HTML page.

Slack's file URLs need `Authorization: Bearer <bot token>` and the `files:read` scope. Without them
Slack does not refuse: it answers 200 (or a redirect to) its sign-in page, which must not be mistaken
for a broken image.
"""
from __future__ import annotations

import requests

CHUNK_BYTES = 256 * 1024
TIMEOUT_SECONDS = (10, 60)  # connect, read
HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<!--")


class DownloadError(Exception):
    """The image could not be fetched from Slack; the message is meant for the person who posted it."""


class ImageTooLarge(DownloadError):
    pass


class LoginPageInstead(DownloadError):
    pass


class DownloadRefused(DownloadError):
    pass


def is_image_file(file: dict) -> bool:
    return str(file.get("mimetype") or "").startswith("image/")


def needs_file_info(file: dict) -> bool:
    """Slack sends stripped file objects (e.g. in Slack Connect channels) that must be completed via files.info."""
    return file.get("file_access") == "check_file_info" or not download_url(file)


def download_url(file: dict) -> str | None:
    return file.get("url_private_download") or file.get("url_private")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _too_large(name: str, size: int | None, max_bytes: int) -> ImageTooLarge:
    size_text = f"is {_megabytes(size)}" if size else "is larger than that"
    return ImageTooLarge(f"*{name}* {size_text}; I only search images up to {_megabytes(max_bytes)}. "
                         "Post a smaller copy (e.g. exported at a lower resolution) and I will look again.")


def _login_page(name: str) -> LoginPageInstead:
    return LoginPageInstead(
        f"Slack sent me its sign-in page instead of *{name}*: the findimage app lacks the `files:read` "
        "permission. Ask a workspace admin to add the `files:read` bot scope to the app (OAuth & Permissions) "
        "and reinstall it.")


def check_announced_size(file: dict, max_bytes: int) -> None:
    """Refuse before connecting when the file object already says the image is too large."""
    size = file.get("size")
    if isinstance(size, int) and size > max_bytes:
        raise _too_large(file.get("name") or file.get("id", "the image"), size, max_bytes)


def fetch(file: dict, token: str, max_bytes: int, session: requests.Session | None = None) -> bytes:
    """The file's bytes; DownloadError (too large, login page, refused) otherwise."""
    name = file.get("name") or file.get("id", "the image")
    check_announced_size(file, max_bytes)
    http = session or requests
    try:
        response = http.get(download_url(file), headers={"Authorization": f"Bearer {token}"},
                            stream=True, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise DownloadRefused(f"I could not download *{name}* from Slack ({type(exc).__name__}). "
                              "Please try posting it again in a minute.") from exc
    with response:
        _check_response(response, name, max_bytes)
        return _read_capped(response, name, max_bytes)


def _check_response(response: requests.Response, name: str, max_bytes: int) -> None:
    if response.status_code != 200:
        raise DownloadRefused(f"Slack refused the download of *{name}* (HTTP {response.status_code}). "
                              "If the file was deleted or is in a channel I cannot see, post it again here.")
    if response.headers.get("Content-Type", "").lower().startswith("text/html"):
        raise _login_page(name)
    announced = response.headers.get("Content-Length")
    if announced and announced.isdigit() and int(announced) > max_bytes:
        raise _too_large(name, int(announced), max_bytes)


def _read_capped(response: requests.Response, name: str, max_bytes: int) -> bytes:
    """Read at most max_bytes, even when Content-Length is missing or lies."""
    data = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        data += chunk
        if len(data) > max_bytes:
            raise _too_large(name, None, max_bytes)
    if bytes(data[:32]).lstrip().lower().startswith(HTML_STARTS):
        raise _login_page(name)  # an HTML page served under an image content type
    return bytes(data)

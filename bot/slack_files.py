"""Fetch an image a user posted from Slack: with the bot token, within a size limit, never an HTML page.

Slack's file URLs need `Authorization: Bearer <bot token>` and the `files:read` scope. Without them
Slack does not refuse: it answers 200 (or a redirect to) its sign-in page, which must not be mistaken
for a broken image.

The token goes only to Slack's own file hosts (https, files.slack.com, *.slack.com, *.slack-edge.com)
or to the host of SLACK_API_URL (a Slack-compatible gateway). A file object is data from the request,
and external files (Google Drive, remote files) carry URLs of any host: sending the token there
would hand it to whoever runs that host.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from findimage.i18n import N_, Translatable

from .untrusted import shown

CHUNK_BYTES = 256 * 1024
TIMEOUT_SECONDS = (10, 60)  # connect, read
HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<!--")
SLACK_FILE_HOSTS = ("files.slack.com",)
SLACK_FILE_DOMAINS = (".slack.com", ".slack-edge.com")
MAX_REDIRECTS = 5
DEFAULT_API_URL = "https://slack.com/api/"
_UNSAFE_IN_AUTHORITY = re.compile(r"[\\%\s\x00-\x1f\x7f]")


class DownloadError(Translatable):
    """The image could not be fetched from Slack; the sentence (mrkdwn, names shown) is meant for the person
    who posted it, in their language."""


class ImageTooLarge(DownloadError):
    pass


class LoginPageInstead(DownloadError):
    pass


class DownloadRefused(DownloadError):
    pass


class ExternalFile(DownloadError):
    pass


class NotASlackHost(DownloadError):
    pass


def is_image_file(file: dict) -> bool:
    return str(file.get("mimetype") or "").startswith("image/")


def needs_file_info(file: dict) -> bool:
    """Slack sends stripped file objects (e.g. in Slack Connect channels) that must be completed via files.info."""
    return file.get("file_access") == "check_file_info" or not download_url(file)


def download_url(file: dict) -> str | None:
    return file.get("url_private_download") or file.get("url_private")


def is_external(file: dict) -> bool:
    """Stored outside Slack (Google Drive, Dropbox, remote files added by apps): not Slack's to serve."""
    return file.get("is_external") is True or file.get("mode") == "external"


def may_receive_token(url: str | None, api_url: str = DEFAULT_API_URL) -> bool:
    """Whether `url` is one of Slack's file hosts (or the configured API's own host) over the expected scheme.

    The host is read by both parsers that matter, Python's (urlsplit) and the one requests connects
    with (urllib3's parse_url), and must be the same for both: they disagree on authorities such as
    `attacker.example\\@files.slack.com`, where urlsplit sees files.slack.com and urllib3 connects to
    attacker.example. Characters that only such tricks need (backslash, percent, whitespace, control
    characters) are refused in the authority outright."""
    try:
        parts = urlsplit(url or "")
        if _UNSAFE_IN_AUTHORITY.search(parts.netloc):
            return False
        connected = parse_url(url or "")
        host = (parts.hostname or "").lower()
        if host != (connected.host or "").lower().strip("[]") or parts.port != connected.port:
            return False
        api = urlsplit(api_url or DEFAULT_API_URL)
        port, api_port = parts.port, api.port
    except ValueError:  # unparseable ports and the like (LocationParseError is a ValueError)
        return False
    if not host or parts.scheme != (connected.scheme or "").lower():
        return False
    if (parts.scheme, host, port) == (api.scheme, (api.hostname or "").lower(), api_port):
        return True
    return parts.scheme == "https" and port in (None, 443) and (
        host in SLACK_FILE_HOSTS or host.endswith(SLACK_FILE_DOMAINS))


class TokenAdapter(HTTPAdapter):
    """Attaches the bot token at send time, to the URL requests is about to connect to, and only where
    may_receive_token allows it: whatever a URL looked like before requests prepared it, the token
    goes to no other host."""

    def __init__(self, token: str, api_url: str):
        super().__init__(max_retries=0)
        self._token = token
        self._api_url = api_url

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if not may_receive_token(request.url, self._api_url):
            raise NotASlackHost(f"refused to send the token to {urlsplit(request.url or '').hostname!r}")
        request.headers["Authorization"] = f"Bearer {self._token}"
        return super().send(request, *args, **kwargs)


def token_session(token: str, api_url: str = DEFAULT_API_URL) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc credentials from the environment on these requests
    adapter = TokenAdapter(token, api_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _too_large(name: str, size: int | None, max_bytes: int) -> ImageTooLarge:
    if size:
        return ImageTooLarge(N_("{name} is {size}; I only search images up to {most}. Post a smaller copy (e.g. "
                                "exported at a lower resolution) and I will look again."),
                             name=shown(name), size=_megabytes(size), most=_megabytes(max_bytes))
    return ImageTooLarge(N_("{name} is larger than that; I only search images up to {most}. Post a smaller copy "
                            "(e.g. exported at a lower resolution) and I will look again."),
                         name=shown(name), most=_megabytes(max_bytes))


def _login_page(name: str) -> LoginPageInstead:
    return LoginPageInstead(
        N_("Slack sent me its sign-in page instead of {name}: the findimage app lacks the `files:read` "
           "permission. Ask a workspace admin to add the `files:read` bot scope to the app (OAuth & Permissions) "
           "and reinstall it."), name=shown(name))


def check_announced_size(file: dict, max_bytes: int) -> None:
    """Refuse before connecting when the file object already says the image is too large."""
    size = file.get("size")
    if isinstance(size, int) and size > max_bytes:
        raise _too_large(file.get("name") or file.get("id", "the image"), size, max_bytes)


def fetch(file: dict, token: str, max_bytes: int, api_url: str = DEFAULT_API_URL) -> bytes:
    """The file's bytes; DownloadError (external, not Slack's host, too large, login page, refused) otherwise."""
    name = file.get("name") or file.get("id", "the image")
    if is_external(file):
        raise ExternalFile(N_("{name} is stored outside Slack, and I cannot search external files; upload the "
                              "image itself to Slack and I will look again."), name=shown(name))
    check_announced_size(file, max_bytes)
    with token_session(token, api_url) as session:
        response = _get_following_slack_redirects(download_url(file), name, api_url, session)
        with response:
            _check_response(response, name, max_bytes)
            return _read_capped(response, name, max_bytes)


def _not_slack(name: str) -> NotASlackHost:
    return NotASlackHost(N_("{name} is not served by Slack's file servers, so I did not download it; upload "
                            "the image itself to Slack and I will look again."), name=shown(name))


def _get_following_slack_redirects(url: str | None, name: str, api_url: str,
                                   session: requests.Session) -> requests.Response:
    """GET with the token (attached by the session's TokenAdapter), following redirects by hand and only
    to hosts that may see the token: checked here on the URL, and again on the prepared one at send time."""
    for _ in range(MAX_REDIRECTS + 1):
        if url is None or not may_receive_token(url, api_url):
            raise _not_slack(name)
        try:
            response = session.get(url, stream=True, timeout=TIMEOUT_SECONDS, allow_redirects=False)
        except NotASlackHost:
            raise _not_slack(name) from None
        except requests.RequestException as exc:
            raise DownloadRefused(N_("I could not download {name} from Slack ({reason}). Please try posting it "
                                     "again in a minute."), name=shown(name), reason=type(exc).__name__) from exc
        if not response.is_redirect:
            return response
        url = urljoin(url, response.headers.get("Location", ""))
        response.close()
    raise DownloadRefused(N_("Slack redirected the download of {name} too often; please post it again."),
                          name=shown(name))


def _check_response(response: requests.Response, name: str, max_bytes: int) -> None:
    if response.status_code != 200:
        raise DownloadRefused(N_("Slack refused the download of {name} (HTTP {status}). If the file was deleted "
                                 "or is in a channel I cannot see, post it again here."),
                              name=shown(name), status=response.status_code)
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

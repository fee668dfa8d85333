"""Signed, expiring links to archive images, served by the bot's own web server (HTTP mode).

Only the bot can make a valid link (HMAC over image id, content tag and expiry), so nobody can read
the archive by guessing URLs, and a link stops working after its time. The content tag is the start of
the image's sha256 as indexed: when the file is replaced and re-indexed, its old links stop working
instead of showing whatever now lives under that path.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from findimage.config import Settings

# Slack's image proxy fetches the picture when the message is posted and may fetch it again later
# (other clients, cache expiry); a week keeps recent answers visible without making links permanent.
LINK_TTL_SECONDS = 7 * 24 * 3600
PATH_PREFIX = "/images/"
TAG_CHARS = 16  # 64 bits of the content hash: enough to tell versions of one file apart

_IMAGE_ID = re.compile(r"[0-9a-f]{1,64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")  # ASCII digits only; 12 digits reach the year 33658
_TAG = re.compile(rf"[0-9a-f]{{{TAG_CHARS}}}")
_SIGNATURE = re.compile(r"[0-9a-f]{32}")
_PARAMS = ("expires", "v", "sig")


class MalformedLink(ValueError):
    """Not a link the bot could have made (missing, repeated or malformed parts)."""


@dataclass(frozen=True)
class LinkRequest:
    image_id: str
    expires: int
    tag: str
    signature: str


def content_tag(sha256: str) -> str:
    return (sha256 or "").lower()[:TAG_CHARS]


def parse_link(path: str, query_string: str) -> LinkRequest:
    """The parts of `/images/<id>.jpg?expires=..&v=..&sig=..`; MalformedLink unless each is there once, well formed."""
    name = path[len(PATH_PREFIX):]
    if not name.endswith(".jpg") or not _IMAGE_ID.fullmatch(name[:-4]):
        raise MalformedLink("unknown image path")
    try:
        # at most the three parameters: with each of them required once below, no other can slip in
        query = parse_qs(query_string, keep_blank_values=True, strict_parsing=True, max_num_fields=len(_PARAMS))
    except ValueError as exc:
        raise MalformedLink("unreadable query string") from exc
    values = {}
    for key, pattern in zip(_PARAMS, (_EXPIRES, _TAG, _SIGNATURE), strict=True):
        found = query.get(key, [])
        if len(found) != 1 or not pattern.fullmatch(found[0]):
            raise MalformedLink(f"{key} missing, repeated or malformed")
        values[key] = found[0]
    return LinkRequest(name[:-4], int(values["expires"]), values["v"], values["sig"])


def signing_key(settings: Settings) -> bytes | None:
    """FINDIMAGE_URL_SIGNING_KEY, else a key derived from the Slack signing secret (never the secret itself)."""
    if settings.url_signing_key:
        return settings.url_signing_key.encode("utf-8")
    if settings.slack_signing_secret:
        return hmac.new(settings.slack_signing_secret.encode("utf-8"), b"findimage image links",
                        hashlib.sha256).digest()
    return None


class ImageLinks:
    def __init__(self, base_url: str, key: bytes, ttl_seconds: int = LINK_TTL_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.time) -> ImageLinks | None:
        key = signing_key(settings)
        if not settings.public_base_url or key is None:
            return None
        return cls(settings.public_base_url, key, clock=clock)

    def _signature(self, image_id: str, tag: str, expires: int) -> str:
        message = f"{image_id}:{tag}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def url_for(self, image_id: str, sha256: str) -> str:
        expires = int(self._clock()) + self.ttl_seconds
        tag = content_tag(sha256)
        return (f"{self.base_url}{PATH_PREFIX}{quote(image_id)}.jpg"
                f"?expires={expires}&v={tag}&sig={self._signature(image_id, tag, expires)}")

    def is_valid(self, link: LinkRequest) -> bool:
        """Made by this bot and not expired; whether the image is still the same is the caller's check."""
        if link.expires < self._clock():
            return False
        return hmac.compare_digest(self._signature(link.image_id, link.tag, link.expires), link.signature)

"""Signed, expiring links to archive images, served by the bot's own web server (HTTP mode).

Only the bot can make a valid link (HMAC over image id and expiry), so nobody can read the archive by
guessing URLs, and a link stops working after its time.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

# Slack's image proxy fetches the picture when the message is posted and may fetch it again later
# (other clients, cache expiry); a week keeps recent answers visible without making links permanent.
LINK_TTL_SECONDS = 7 * 24 * 3600
PATH_PREFIX = "/images/"


def signing_key(settings) -> bytes | None:
    """FINDIMAGE_URL_SIGNING_KEY, else a key derived from the Slack signing secret (never the secret itself)."""
    if settings.url_signing_key:
        return settings.url_signing_key.encode("utf-8")
    if settings.slack_signing_secret:
        return hmac.new(settings.slack_signing_secret.encode("utf-8"), b"findimage image links",
                        hashlib.sha256).digest()
    return None


class ImageLinks:
    def __init__(self, base_url: str, key: bytes, ttl_seconds: int = LINK_TTL_SECONDS, clock=time.time):
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings) -> "ImageLinks | None":
        key = signing_key(settings)
        if not settings.public_base_url or key is None:
            return None
        return cls(settings.public_base_url, key)

    def _signature(self, image_id: str, expires: int) -> str:
        message = f"{image_id}:{expires}".encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def url_for(self, image_id: str) -> str:
        expires = int(self._clock()) + self.ttl_seconds
        return (f"{self.base_url}{PATH_PREFIX}{quote(image_id)}.jpg"
                f"?expires={expires}&sig={self._signature(image_id, expires)}")

    def is_valid(self, image_id: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._signature(image_id, int(expires)), signature)

"""GET /images/<image_id>.jpg?expires=..&v=..&sig=..: an archive image behind a signed link (bot.image_links),
as a preview, while the link is valid and the file is in the archive as it was indexed."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

from findimage.archive_files import ArchiveFileRefused, Indexed, is_servable, read_archive_file
from findimage.config import Settings
from findimage.imaging import ImageError
from findimage.stores.base import Store

from ..image_links import ImageLinks, MalformedLink, content_tag, parse_link
from ..previews import Previews, RenderBusy
from .responses import reply, sentence

log = logging.getLogger(__name__)


class SignedImages:
    """Previews of the archive's images in `store`, for the links that `links` signed."""

    def __init__(self, links: ImageLinks, store: Store, previews: Previews, settings: Settings):
        self.links = links
        self.store = store
        self.previews = previews
        self.archive = Path(settings.archive).resolve()
        self.budget = settings.decode_budget_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        try:
            return self._image(path, environ.get("QUERY_STRING", ""), start_response)
        except Exception:
            # Logged here, by path: gunicorn would log the whole URL, whose signature opens the image.
            log.exception("image link %s failed", path[:100])
            return sentence(start_response, "500 Internal Server Error", "Something went wrong with this image.")

    def _image(self, path: str, query_string: str, start_response: StartResponse) -> list[bytes]:
        try:
            link = parse_link(path, query_string)
        except MalformedLink as exc:
            log.info("malformed image link %s: %s", path[:100], exc)
            return sentence(start_response, "400 Bad Request", "This image link is malformed.")
        if not self.links.is_valid(link):
            return sentence(start_response, "403 Forbidden", "This image link is invalid or expired.")
        try:
            doc = self.store.get(link.image_id)
        except Exception as exc:
            log.warning("cannot look up image %s: %s: %s", link.image_id, type(exc).__name__, exc)
            return sentence(start_response, "503 Service Unavailable", "The archive is not reachable right now.",
                            [("Retry-After", "30")])
        if doc is None:
            return sentence(start_response, "404 Not Found", "This image is no longer in the archive.")
        if content_tag(doc.sha256) != link.tag:
            return sentence(start_response, "404 Not Found", "This image has been replaced since the link was made.")
        indexed = doc.indexed
        if not is_servable(self.archive, doc.relative_path, indexed):
            # Gone, changed since indexing (the stored hash no longer describes its bytes), or reached
            # through a link that leaves the archive: never served.
            log.info("image %s is not in the archive as indexed; not served", doc.image_id)
            return sentence(start_response, "404 Not Found", "This image is no longer in the archive.")
        try:
            data = self.previews.get(doc.sha256, partial(self._read, doc.relative_path, indexed), doc.image_name)
        except RenderBusy as exc:
            log.info("image link answered busy: %s", exc)
            return sentence(start_response, "503 Service Unavailable", "Too many images at once; try again shortly.",
                            [("Retry-After", "2")])
        except ImageError as exc:
            log.warning("cannot serve image %s: %s", doc.image_id, exc)
            return sentence(start_response, "404 Not Found", "This image cannot be shown.")
        return reply(start_response, "200 OK", "image/jpeg", data, [("Cache-Control", "private, max-age=86400")])

    def _read(self, relative_path: str, indexed: Indexed) -> bytes:
        try:
            return read_archive_file(self.archive, relative_path, self.budget, indexed)
        except ArchiveFileRefused as exc:
            raise ImageError(str(exc)) from None

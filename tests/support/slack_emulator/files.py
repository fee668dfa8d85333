"""Files hosted by the emulator: what files.slack.com serves and accepts.

* ``url_private`` / ``url_private_download`` / ``thumb_*`` need ``Authorization: Bearer <bot token>``
  and the ``files:read`` scope; otherwise Slack serves its HTML sign-in page (status 200, or a
  302 to it when ``files_redirect_to_login`` is set), which is the classic trap for bots.
* Upload URLs from files.getUploadURLExternal take a POST of raw bytes (what slack_sdk's
  ``files_upload_v2`` sends) or multipart form data (what the docs' curl example sends).
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import random
import string
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .fixtures import fixture
from .records import Download

_FILE_TYPES = {
    "image/png": ("png", "PNG"),
    "image/jpeg": ("jpg", "JPEG"),
    "image/gif": ("gif", "GIF"),
    "image/webp": ("webp", "WebP"),
    "image/heic": ("heic", "HEIC"),
    "image/bmp": ("bmp", "BMP"),
    "image/tiff": ("tiff", "TIFF"),
    "application/pdf": ("pdf", "PDF"),
    "text/plain": ("text", "Plain Text"),
}
_THUMB_SIZES = (64, 80, 160, 360, 480, 720, 800, 960, 1024)
THUMB_TINY = fixture("events/message_file_share")["event"]["files"][0]["thumb_tiny"]  # a few bytes of JPEG

LOGIN_PAGE = """<!DOCTYPE html><html lang="en-US"><head><meta charset="utf-8">
<title>Slack</title></head><body class="signin">
<h1>Sign in to {domain}.slack.com</h1>
<form id="signin_form" action="/" method="post"><input type="email" name="email">
<input type="password" name="password"><button type="submit">Sign in</button></form>
</body></html>"""


def _image_size(content: bytes | None) -> tuple | None:
    if not content:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            return image.size
    except Exception:
        return None


class FilesMixin:
    def _init_files(self) -> None:
        self._files: dict = {}  # file id -> stored file (dict)
        self._pending_uploads: dict = {}  # upload URL key -> announced upload
        self._upload_keys_by_file: dict = {}

    def _add_file_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/upload/v1/{key}", self._handle_upload)
        router.add_get("/files-pri/{ref}/download/{name}", self._handle_file_get)
        router.add_get("/files-pri/{ref}/{name}", self._handle_file_get)
        router.add_get("/files-tmb/{ref}/{name}", self._handle_file_get)
        router.add_get("/", self._handle_login_page)

    # ------------------------------------------------------------------ public API

    def add_file(
        self,
        content: bytes | None = None,
        name: str = "image.png",
        mimetype: str | None = None,
        user: str = "U0USER",
        *,
        title: str | None = None,
        size: int | None = None,
        chunk_size: int = 64 * 1024,
        chunk_delay: float = 0.0,
        file_id: str | None = None,
        **fields: Any,
    ) -> dict:
        """Register a file as if ``user`` had uploaded it; returns its Slack file object.

        For size-limit tests pass ``size`` without ``content``: the emulator then serves
        ``size`` zero bytes without holding them in memory. ``chunk_delay`` (seconds per
        ``chunk_size`` bytes) makes the download slow. Downloads always send Content-Length.
        Extra ``fields`` override fields of the file object (e.g. ``original_w=4000``).
        """
        if content is None and size is None:
            raise ValueError("give the file content or its size")
        stored = self._store_file(
            content,
            name,
            user=user,
            title=title,
            mimetype=mimetype,
            size=size,
            chunk_size=chunk_size,
            chunk_delay=chunk_delay,
            fields=fields,
            file_id=file_id,
        )
        return self.file_object(stored["id"])

    def file_object(self, file_id: str) -> dict:
        """The file object as files.info (and message events) show it."""
        with self._lock:
            f = self._files[file_id]
            channels = list(f["channels"])
            shares = {kind: {c: list(s) for c, s in by_channel.items()} for kind, by_channel in f["shares"].items()}
        ref = f"{self.team_id}-{f['id']}"
        quoted = quote(f["name"])
        obj = {
            "id": f["id"],
            "created": f["created"],
            "timestamp": f["created"],
            "name": f["name"],
            "title": f["title"],
            "mimetype": f["mimetype"],
            "filetype": f["filetype"],
            "pretty_type": f["pretty_type"],
            "user": f["user"],
            "user_team": self.user_team(f["user"]),
            "editable": False,
            "size": f["size"],
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(self._conversation(c)["kind"] == "public" for c in channels),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self.base_url}/files-pri/{ref}/{quoted}",
            "url_private_download": f"{self.base_url}/files-pri/{ref}/download/{quoted}",
            "media_display_type": "unknown",
            "permalink": f"https://{self.team_domain}.slack.com/files/{f['user']}/{f['id']}/{quoted}",
            "permalink_public": f"https://slack-files.com/{ref}-0a1b2c3d4e",
            "file_access": "visible",
            "channels": [c for c in channels if self._conversation(c)["kind"] == "public"],
            "groups": [c for c in channels if self._conversation(c)["kind"] in ("private", "mpim")],
            "ims": [c for c in channels if self._conversation(c)["kind"] == "im"],
            "shares": shares,
            "comments_count": 0,
            "is_starred": False,
            "has_rich_preview": False,
        }
        if f["image_size"]:
            width, height = f["image_size"]
            obj.update(original_w=width, original_h=height, image_exif_rotation=1)
            stem, ext = f["name"].rsplit(".", 1)[0], "jpg" if f["mimetype"] == "image/jpeg" else "png"
            for n in _THUMB_SIZES:
                if n > 360 and max(width, height) <= n:
                    continue
                obj[f"thumb_{n}"] = f"{self.base_url}/files-tmb/{ref}/{quote(stem)}_{n}.{ext}"
                if n >= 360:
                    scale = min(1.0, n / max(width, height))
                    obj[f"thumb_{n}_w"], obj[f"thumb_{n}_h"] = round(width * scale), round(height * scale)
            obj["thumb_tiny"] = THUMB_TINY
        obj.update(f["fields"])
        return obj

    def delete_file(self, file_id: str, *, hidden: bool = False) -> dict:
        """The file is deleted (files.info: file_deleted; in history a tombstone) or, with ``hidden``, no longer
        visible to the bot (file_not_found; in history the stripped check_file_info object); its URLs answer 404
        either way. Returns the ``file_deleted`` event Slack sends for a deletion."""
        with self._lock:
            self._files[file_id]["gone"] = "file_not_found" if hidden else "file_deleted"
        return self.file_deleted_event(file_id)

    def _file_gone(self, file_id: str) -> str | None:
        with self._lock:
            return self._files[file_id].get("gone")

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            f = self._files[file_id]
        return b"".join(self._chunks(f))

    # ------------------------------------------------------------------ storage

    def _new_file_id(self) -> str:
        return "F" + "".join(random.choices(string.ascii_uppercase + string.digits, k=10))

    def _has_file(self, file_id: str) -> bool:
        with self._lock:
            return file_id in self._files

    def _store_file(
        self,
        content: bytes | None,
        name: str,
        *,
        user: str,
        title: str | None = None,
        file_id: str | None = None,
        mimetype: str | None = None,
        size: int | None = None,
        chunk_size: int = 64 * 1024,
        chunk_delay: float = 0.0,
        fields: dict | None = None,
    ) -> dict:
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        filetype, pretty_type = _FILE_TYPES.get(mimetype, (extension, extension.upper()))
        stored = {
            "id": file_id or self._new_file_id(),
            "name": name,
            "title": title or name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": pretty_type,
            "user": user,
            "created": int(time.time()),
            "content": content,
            "size": len(content) if content is not None else int(size),
            "image_size": _image_size(content) if mimetype.startswith("image/") else None,
            "chunk_size": chunk_size,
            "chunk_delay": chunk_delay,
            "channels": [],
            "shares": {},
            "fields": dict(fields or {}),
        }
        with self._lock:
            self._files[stored["id"]] = stored
        return stored

    def _share_file(self, stored: dict, channel: str, ts: str, thread_ts: str | None) -> None:
        share = {"ts": ts, "channel_name": channel, "team_id": self.team_id, "share_user_id": stored["user"]}
        if thread_ts:
            share["thread_ts"] = thread_ts
        kind = "public" if self._conversation(channel)["kind"] == "public" else "private"
        with self._lock:
            if channel not in stored["channels"]:
                stored["channels"].append(channel)
            stored["shares"].setdefault(kind, {}).setdefault(channel, []).insert(0, share)

    def _chunks(self, f: dict) -> Iterator[bytes]:
        step = f["chunk_size"]
        if f["content"] is not None:
            for start in range(0, len(f["content"]), step):
                yield f["content"][start : start + step]
            return
        remaining = f["size"]
        while remaining > 0:
            yield bytes(min(step, remaining))
            remaining -= step

    def _thumbnail(self, f: dict, requested: str) -> tuple | None:
        try:
            size = int(requested.rsplit("_", 1)[1].split(".")[0])
            from PIL import Image

            with Image.open(io.BytesIO(f["content"])) as image:
                image = image.convert("RGB") if f["mimetype"] == "image/jpeg" else image.convert("RGBA")
                image.thumbnail((size, size))
                out = io.BytesIO()
                kind = "JPEG" if f["mimetype"] == "image/jpeg" else "PNG"
                image.save(out, kind)
            return out.getvalue(), f"image/{kind.lower()}"
        except Exception:
            return None

    # ------------------------------------------------------------------ HTTP handlers

    async def _handle_upload(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        with self._lock:
            upload = self._pending_uploads.get(key)
        if upload is None:
            return web.Response(status=404, text="upload URL unknown or already used")
        content: bytes | None = None
        if request.content_type.startswith("multipart/"):
            async for part in await request.multipart():
                if getattr(part, "filename", None) is not None or part.name in ("filename", "file"):
                    content = bytes(await part.read(decode=False))
                    break
            if content is None:
                return web.Response(status=400, text="no file part in the multipart body")
        else:
            content = await request.read()
        if len(content) != upload["length"]:
            # emulator choice: Slack's reaction is undocumented; a mismatch is always an app bug
            message = f"length mismatch: announced {upload['length']} bytes, received {len(content)}"
            return web.Response(status=400, text=message)
        with self._lock:
            upload["content"] = content
        return web.Response(text=f"OK - {len(content)}")

    async def _handle_login_page(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE.format(domain=self.team_domain), content_type="text/html")

    async def _handle_file_get(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        prefix = f"{self.team_id}-"
        with self._lock:
            f = self._files.get(ref[len(prefix) :]) if ref.startswith(prefix) else None
            scopes_ok = "files:read" in self.bot_scopes
        if f is None or f.get("gone"):
            return web.Response(status=404, text="<html><body>File not found</body></html>", content_type="text/html")
        auth = request.headers.get("Authorization", "")
        authorized = auth == f"Bearer {self.bot_token}" and scopes_ok
        if not authorized:
            self._recorder.add("downloads", Download(f["id"], request.path, False, 0, True, time.monotonic()))
            if self.files_redirect_to_login:
                raise web.HTTPFound(f"/?redir={quote(request.path_qs, safe='')}")
            return await self._handle_login_page(request)
        if request.path.startswith("/files-tmb/"):
            thumb = self._thumbnail(f, request.match_info["name"])
            if thumb is None:
                return web.Response(status=404, text="no such thumbnail")
            self._recorder.add(
                "downloads", Download(f["id"], request.path, True, len(thumb[0]), True, time.monotonic())
            )
            return web.Response(body=thumb[0], content_type=thumb[1])
        return await self._stream_file(request, f)

    async def _stream_file(self, request: web.Request, f: dict) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": f["mimetype"]})
        response.content_length = f["size"]
        if "/download/" in request.path:
            response.headers["Content-Disposition"] = f'attachment; filename="{f["name"]}"'
        await response.prepare(request)
        sent, complete = 0, False
        try:
            if request.method != "HEAD":
                for chunk in self._chunks(f):
                    await response.write(chunk)
                    sent += len(chunk)
                    if f["chunk_delay"]:
                        await asyncio.sleep(f["chunk_delay"])
                await response.write_eof()
            complete = True
        except ConnectionError:
            pass  # the client hung up: recorded as an incomplete download
        finally:  # also when the handler is cancelled
            self._recorder.add("downloads", Download(f["id"], request.path, True, sent, complete, time.monotonic()))
        return response

"""Downloading a posted image from a file server that misbehaves in ways the emulator's Slack does not:
a size announced too large, no size announced while streaming on and on, HTML under an image type."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.slack_files import DownloadRefused, ImageTooLarge, LoginPageInstead, fetch
from photos import jpeg_bytes

TOKEN = "xoxb-test"
LIMIT = 100_000


@contextmanager
def file_server():
    """Serves /<case>; records how many body bytes each request managed to send, and when the endless stream stopped."""
    sent: dict[str, int] = {}
    stream_ended = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            case = self.path.strip("/")
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(200, "text/html", b"<!DOCTYPE html><html>Sign in</html>")
            if case == "photo":
                return self._send(200, "image/jpeg", jpeg_bytes(seed=1))
            if case == "announced-too-large":
                return self._send(200, "image/jpeg", bytes(LIMIT + 1))
            if case == "html-as-image":
                return self._send(200, "image/png", b"  <!doctype html><html>Sign in</html>")
            if case == "endless":
                return self._stream_without_length()
            return self._send(404, "text/html", b"<html>not found</html>")

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
                sent[self.path.strip("/")] = len(body)
            except ConnectionError:
                sent[self.path.strip("/")] = -1

        def _stream_without_length(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            total = 0
            try:
                while total < 500 * LIMIT:  # far more than the limit, unless the client hangs up
                    chunk = bytes(16 * 1024)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    total += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except (ConnectionError, socket.error):
                pass
            sent["endless"] = total
            stream_ended.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", sent, stream_ended
    finally:
        server.shutdown()
        server.server_close()


def slack_file(base: str, case: str, **fields) -> dict:
    return {"id": "F0TEST", "name": f"{case}.jpg", "mimetype": "image/jpeg",
            "url_private_download": f"{base}/{case}", **fields}


def test_an_image_is_fetched_with_the_bot_token():
    with file_server() as (base, _, _):
        assert fetch(slack_file(base, "photo"), TOKEN, LIMIT) == jpeg_bytes(seed=1)


def test_a_size_in_the_file_object_above_the_limit_is_refused_before_connecting():
    with file_server() as (base, sent, _):
        with pytest.raises(ImageTooLarge, match=r"is 0.2 MB; I only search images up to 0.1 MB"):
            fetch(slack_file(base, "photo", size=200_000), TOKEN, LIMIT)
    assert sent == {}


def test_a_content_length_above_the_limit_is_refused_before_reading_the_body():
    with file_server() as (base, _, _):
        with pytest.raises(ImageTooLarge, match=r"is 0.1 MB; I only search images up to 0.1 MB"):
            fetch(slack_file(base, "announced-too-large"), TOKEN, LIMIT)


def test_a_stream_without_content_length_is_cut_off_at_the_limit():
    with file_server() as (base, sent, stream_ended):
        with pytest.raises(ImageTooLarge, match="is larger than that"):
            fetch(slack_file(base, "endless"), TOKEN, LIMIT)
        assert stream_ended.wait(10), "the server noticed the hang-up"
    assert sent["endless"] < 500 * LIMIT, "the download stopped long before the end of the stream"


def test_html_is_recognised_as_the_sign_in_page_whatever_its_content_type():
    with file_server() as (base, _, _):
        with pytest.raises(LoginPageInstead, match="files:read"):
            fetch(slack_file(base, "photo"), "xoxb-wrong-token", LIMIT)
        with pytest.raises(LoginPageInstead, match="files:read"):
            fetch(slack_file(base, "html-as-image"), TOKEN, LIMIT)


def test_refusals_and_unreachable_servers_are_download_errors():
    with file_server() as (base, _, _):
        with pytest.raises(DownloadRefused, match=r"HTTP 404"):
            fetch(slack_file(base, "deleted"), TOKEN, LIMIT)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(DownloadRefused, match="could not download"):
        fetch(slack_file(f"http://127.0.0.1:{closed}", "photo"), TOKEN, LIMIT)

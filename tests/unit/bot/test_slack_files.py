"""Downloading a posted image from a file server that misbehaves in ways the emulator's Slack does not:
a size announced too large, no size announced while streaming on and on, HTML under an image type."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

import pytest
from bot_support import recording_server, serving
from photos import jpeg_bytes

from bot.slack_files import (
    CHUNK_BYTES,
    DownloadRefused,
    ExternalFile,
    ImageTooLarge,
    LoginPageInstead,
    NotASlackHost,
    fetch,
    may_receive_token,
    token_session,
)

TOKEN = "xoxb-test"
LIMIT = 100_000
SOCKET_BUFFER = 4096  # asked for on both ends of a download; the kernel doubles it
# Bytes the kernel may hold between the two programs (send and receive buffers, in flight): a
# generous bound, far below what a client that kept reading would take.
KERNEL_SLACK = 128 * 1024


@pytest.fixture(autouse=True)
def small_receive_buffer(monkeypatch):
    """The client's sockets get a small receive buffer (set before connecting, as urllib3 applies
    socket options), so the server cannot push much more than the client actually reads."""
    from urllib3.util import connection

    original = connection.create_connection
    default_timeout = connection.socket.getdefaulttimeout()

    def create_connection(address, timeout=default_timeout, source_address=None,
                          socket_options=None):
        options = list(socket_options or []) + [(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)]
        return original(address, timeout, source_address, options)

    monkeypatch.setattr(connection, "create_connection", create_connection)


@contextmanager
def file_server():
    """Serves /<case>; records how many body bytes each request managed to send, and when the endless stream stopped."""
    sent: dict[str, int] = {}
    stream_ended = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            # A small send buffer: what `sent` counts is then close to what the client took off the wire.
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            super().setup()

        def do_GET(self):
            case = self.path.strip("/")
            if case.startswith("go?to="):  # a redirect, wherever the test says
                return self._redirect(unquote(case[len("go?to="):]))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(200, "text/html", b"<!DOCTYPE html><html>Sign in</html>")
            if case == "photo":
                return self._send(200, "image/jpeg", jpeg_bytes(seed=1))
            if case == "announced-too-large":
                return self._send(200, "image/jpeg", bytes(LIMIT + 1))
            if case == "announced-huge":
                return self._stream_with_length(500 * LIMIT)
            if case == "html-as-image":
                return self._send(200, "image/png", b"  <!doctype html><html>Sign in</html>")
            if case == "endless":
                return self._stream_without_length()
            return self._send(404, "text/html", b"<html>not found</html>")

        def _redirect(self, location):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

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

        def _stream_with_length(self, length):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            total = 0
            try:
                while total < length:
                    self.wfile.write(bytes(16 * 1024))
                    total += 16 * 1024
            except (OSError, ConnectionError):
                pass
            sent[self.path.strip("/")] = total
            stream_ended.set()

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
            except (OSError, ConnectionError):
                pass
            sent["endless"] = total
            stream_ended.set()

        def log_message(self, *args):
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url, sent, stream_ended


def api_url(base: str) -> str:
    """The file server plays Slack: the API's own host may receive the token, as the emulator's does."""
    return f"{base}/api/"


def slack_file(base: str, case: str, **fields) -> dict:
    return {"id": "F0TEST", "name": f"{case}.jpg", "mimetype": "image/jpeg",
            "url_private_download": f"{base}/{case}", **fields}


def test_an_image_is_fetched_with_the_bot_token():
    with file_server() as (base, _, _):
        assert fetch(slack_file(base, "photo"), TOKEN, LIMIT, api_url(base)) == jpeg_bytes(seed=1)


def test_a_size_in_the_file_object_above_the_limit_is_refused_before_connecting():
    with file_server() as (base, sent, _):
        with pytest.raises(ImageTooLarge, match=r"is 0.2 MB; I only search images up to 0.1 MB"):
            fetch(slack_file(base, "photo", size=200_000), TOKEN, LIMIT, api_url(base))
    assert sent == {}


def test_a_content_length_above_the_limit_is_refused_before_reading_the_body():
    with file_server() as (base, sent, stream_ended):
        with pytest.raises(ImageTooLarge, match=r"is 0.1 MB; I only search images up to 0.1 MB"):
            fetch(slack_file(base, "announced-too-large"), TOKEN, LIMIT, api_url(base))
        with pytest.raises(ImageTooLarge, match=r"is 50.0 MB; I only search images up to 0.1 MB"):
            fetch(slack_file(base, "announced-huge"), TOKEN, LIMIT, api_url(base))
        assert stream_ended.wait(10), "the client hung up"
    # of 50 MB announced, the server got rid of no more than the kernel buffers hold: the client read
    # none of the body (reading it up to the limit would have taken more than LIMIT bytes)
    assert sent["announced-huge"] < KERNEL_SLACK < LIMIT + KERNEL_SLACK


def test_a_stream_without_content_length_is_cut_off_at_the_limit():
    with file_server() as (base, sent, stream_ended):
        with pytest.raises(ImageTooLarge, match="is larger than that"):
            fetch(slack_file(base, "endless"), TOKEN, LIMIT, api_url(base))
        assert stream_ended.wait(10), "the server noticed the hang-up"
    # the client stops after the read that passed the limit: at most the limit plus one read
    assert LIMIT < sent["endless"] <= LIMIT + CHUNK_BYTES + KERNEL_SLACK, sent


def test_html_is_recognised_as_the_sign_in_page_whatever_its_content_type():
    with file_server() as (base, _, _):
        with pytest.raises(LoginPageInstead, match="files:read"):
            fetch(slack_file(base, "photo"), "xoxb-wrong-token", LIMIT, api_url(base))
        with pytest.raises(LoginPageInstead, match="files:read"):
            fetch(slack_file(base, "html-as-image"), TOKEN, LIMIT, api_url(base))


def test_refusals_and_unreachable_servers_are_download_errors():
    with file_server() as (base, _, _):
        with pytest.raises(DownloadRefused, match=r"HTTP 404"):
            fetch(slack_file(base, "deleted"), TOKEN, LIMIT, api_url(base))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(DownloadRefused, match="could not download"):
        fetch(slack_file(f"http://127.0.0.1:{closed}", "photo"), TOKEN, LIMIT, f"http://127.0.0.1:{closed}/api/")


@pytest.mark.parametrize("url, allowed", [
    ("https://files.slack.com/files-pri/T1-F1/download/a.png", True),
    ("https://myteam.slack.com/files/U1/F1/a.png", True),
    ("https://a.slack-edge.com/img/a.png", True),
    ("https://files.slack.com:443/files-pri/T1-F1/a.png", True),
    ("http://files.slack.com/files-pri/T1-F1/a.png", False),  # the token never travels in clear text
    ("https://files.slack.com:8443/a.png", False),
    ("https://files.slack.com.example.org/a.png", False),
    ("https://evilslack.com/a.png", False),
    ("https://slack.com@example.org/a.png", False),
    ("https://example.org/?u=https://files.slack.com/", False),
    ("ftp://files.slack.com/a.png", False),
    ("https://files.slack.com:99999/a.png", False),
    # Python's urlsplit reads files.slack.com; urllib3, which requests connects with, reads attacker.example.
    ("https://attacker.example\\@files.slack.com/x", False),
    ("https://attacker.example%5C@files.slack.com/x", False),
    ("https://files.slack.com%2eexample.org/x", False),
    ("https://files.slack.com\t/x", False),
    ("https://files.slack.com\n.example.org/x", False),
    ("https://files .slack.com/x", False),
    ("", False),
    (None, False),
])
def test_the_token_may_go_only_to_slack_file_hosts(url, allowed):
    assert may_receive_token(url) is allowed


def test_the_configured_api_host_may_receive_the_token_but_no_other_port_or_scheme():
    assert may_receive_token("http://127.0.0.1:5000/files-pri/x.png", "http://127.0.0.1:5000/api/")
    assert not may_receive_token("http://127.0.0.1:5001/files-pri/x.png", "http://127.0.0.1:5000/api/")
    assert not may_receive_token("https://127.0.0.1:5000/files-pri/x.png", "http://127.0.0.1:5000/api/")
    assert not may_receive_token("http://127.0.0.1:5000/x.png")  # default API: slack.com only


def test_a_file_on_another_host_is_refused_without_any_request():
    with recording_server() as (other, seen):
        with pytest.raises(NotASlackHost, match=r"^`elsewhere.jpg` is not served by Slack's file servers"):
            fetch(slack_file(other, "elsewhere"), TOKEN, LIMIT)
    assert seen == []


def test_redirects_are_followed_only_to_hosts_that_may_see_the_token():
    with file_server() as (base, _, _), recording_server() as (other, seen):
        same_host = slack_file(base, "go?to=" + quote("/photo", safe=""), name="moved.jpg")
        assert fetch(same_host, TOKEN, LIMIT, api_url(base)) == jpeg_bytes(seed=1)
        away = slack_file(base, "go?to=" + quote(f"{other}/steal", safe=""), name="away.jpg")
        with pytest.raises(NotASlackHost, match=r"`away.jpg`"):
            fetch(away, TOKEN, LIMIT, api_url(base))
    assert seen == [], "the other host was never contacted, so it never saw the token"


def test_a_backslash_in_the_authority_never_carries_the_token_to_the_host_urllib3_connects_to():
    """The file URL names the configured API host after a backslash and '@': Python's parser reads that
    host, while requests (urllib3) would connect to the listener on the second loopback address."""
    with file_server() as (base, _, _), recording_server("127.0.0.2") as (other, seen):
        trick = f"{other}\\@{base.removeprefix('http://')}/photo"
        assert urlsplit(trick).netloc.endswith(base.removeprefix("http://"))  # what the old check looked at
        with pytest.raises(NotASlackHost, match=r"`trick.jpg` is not served by Slack's file servers"):
            fetch({"id": "F1", "name": "trick.jpg", "mimetype": "image/jpeg", "url_private_download": trick},
                  TOKEN, LIMIT, api_url(base))
        redirected = slack_file(base, "go?to=" + quote(trick, safe=""), name="bounced.jpg")
        with pytest.raises(NotASlackHost, match=r"`bounced.jpg`"):
            fetch(redirected, TOKEN, LIMIT, api_url(base))
    assert seen == [], "the listener on 127.0.0.2 never saw a request, so never the token"


def test_the_token_is_attached_at_send_time_only_for_hosts_that_may_see_it():
    """Even a URL that reached the session without the check gets no token: the adapter re-checks
    the prepared URL requests is about to connect to."""
    with recording_server("127.0.0.2") as (other, seen), token_session(TOKEN, api_url(other)) as session:
        assert session.get(f"{other}/ok", timeout=10).status_code == 200
        with pytest.raises(NotASlackHost):
            session.get(f"{other.replace('127.0.0.2', '127.0.0.1')}/elsewhere", timeout=10)
        with pytest.raises(NotASlackHost):
            session.get(f"http://127.0.0.1:1\\@{other.removeprefix('http://')}/x", timeout=10)
    assert seen == [{"path": "/ok", "authorization": f"Bearer {TOKEN}"}]


def test_external_files_are_not_downloaded():
    with recording_server() as (other, seen):
        drive = slack_file(other, "drive", is_external=True, external_type="gdrive", mode="external")
        with pytest.raises(ExternalFile, match="I cannot search external files"):
            fetch(drive, TOKEN, LIMIT, api_url(other))
    assert seen == []

"""The Slack emulator, checked with the real slack_sdk and slack_bolt: each test is a small
story of what a Slack user (or the bot) does and what they would see."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_emulator import SlackEmulator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

CHANNEL = "C0CHANNEL"
ALICE = "U0ALICE"


def png_bytes(width: int = 40, height: int = 30, color: str = "red") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def http_get(url: str, token: str | None = None):
    """GET a URL as an app downloading a Slack file does (urllib follows redirects)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers, response.read()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def emu():
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu):
    return WebClient(token=emu.bot_token, base_url=emu.api_url)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def served_over_http(app: App):
    """Serve a Bolt app on a real HTTP server; yields its Request URL."""
    server = make_server(
        "127.0.0.1", 0, SlackRequestHandler(app), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/slack/events"
    finally:
        server.shutdown()
        server.server_close()


def minimal_bolt_app(emu: SlackEmulator) -> tuple[App, list]:
    """A minimal real Bolt app, to test the emulator with (findimage itself is driven by the other bot tests):
    answers a slash command, and posted images in their thread with an upload. Returns the app and the retry
    numbers seen."""
    app = App(client=WebClient(token=emu.bot_token, base_url=emu.api_url), signing_secret=emu.signing_secret)
    retries_seen: list = []

    @app.command("/findimage")
    def findimage(ack, command, respond, client):
        ack()
        respond(f"Searching the archive for “{command['text']}”…")
        client.chat_postMessage(channel=command["channel_id"], text=f"Found 3 images for {command['text']}")

    @app.event("message")
    def on_message(event, client, context, request):
        retries_seen.append(request.headers.get("x-slack-retry-num", [None])[0])
        for shared in event.get("files", []):
            _, _, image = http_get(shared["url_private_download"], context.bot_token)
            client.files_upload_v2(
                file_uploads=[{"file": image, "filename": "match-" + shared["name"]}],
                channel=event["channel"],
                thread_ts=event["ts"],
                initial_comment="Closest archive match",
            )

    return app, retries_seen


# ---------------------------------------------------------------------------- Web API


def test_the_bot_learns_who_it_is(client, emu):
    identity = client.auth_test()

    assert identity["ok"] is True
    assert (identity["user_id"], identity["bot_id"], identity["team_id"]) == ("U0BOT", "B0BOT", "T0TEAM")
    assert identity["url"] == "https://findimage-test.slack.com/"


def test_wrong_tokens_are_refused_the_way_slack_refuses_them(emu):
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-stolen", base_url=emu.api_url).chat_postMessage(channel=CHANNEL, text="hi")
    with pytest.raises(SlackApiError) as app_token_for_chat:
        WebClient(token=emu.app_token, base_url=emu.api_url).chat_postMessage(channel=CHANNEL, text="hi")
    with pytest.raises(SlackApiError) as bot_token_for_socket:
        WebClient(token=emu.bot_token, base_url=emu.api_url).apps_connections_open(app_token=emu.bot_token)

    assert wrong.value.response["error"] == "invalid_auth"
    assert app_token_for_chat.value.response["error"] == "not_allowed_token_type"
    assert bot_token_for_socket.value.response["error"] == "not_allowed_token_type"
    assert emu.messages() == []


def test_a_reply_in_a_thread_and_an_ephemeral_hint_reach_the_right_people(client, emu):
    question = client.chat_postMessage(channel=CHANNEL, text="Which cat is this?")
    reply = client.chat_postMessage(
        channel=CHANNEL,
        thread_ts=question["ts"],
        text="fallback",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*3 matches* in the archive"}}],
    )
    as_json = {"channel": CHANNEL, "thread_ts": question["ts"], "blocks": [{"type": "divider"}], "text": "(json)"}
    client.api_call("chat.postMessage", json=as_json)
    hint = client.chat_postEphemeral(channel=CHANNEL, user=ALICE, text="Only you can see this")

    assert reply["channel"] == CHANNEL and reply["message"]["thread_ts"] == question["ts"]
    assert reply["message"]["bot_id"] == "B0BOT" and float(reply["ts"]) > float(question["ts"])
    in_thread = emu.messages(CHANNEL, thread_ts=question["ts"])
    assert [m.visible_text for m in in_thread] == ["fallback\n*3 matches* in the archive", "(json)"]
    assert in_thread[1].blocks == [{"type": "divider"}]
    (ephemeral,) = emu.messages(CHANNEL, ephemeral=True)
    assert (ephemeral.user, ephemeral.text, ephemeral.ts) == (ALICE, "Only you can see this", hint["message_ts"])
    with pytest.raises(SlackApiError, match="no_text"), pytest.warns(UserWarning):
        client.chat_postMessage(channel=CHANNEL)


def test_files_upload_v2_shares_the_images_in_the_thread(client, emu):
    cat, dog = png_bytes(color="orange"), png_bytes(64, 48, "brown")

    result = client.files_upload_v2(
        file_uploads=[{"file": cat, "filename": "cat.png"}, {"file": dog, "filename": "dog.png", "title": "A dog"}],
        channel=CHANNEL,
        thread_ts="1700000000.000100",
        initial_comment="Here is what I found",
    )

    (upload,) = emu.uploads(CHANNEL, thread_ts="1700000000.000100")
    assert upload.names == ["cat.png", "dog.png"] and upload.contents == [cat, dog]
    assert upload.initial_comment == "Here is what I found"
    assert [f["id"] for f in result["files"]] == [f.id for f in upload.files]
    info = client.files_info(file=upload.files[1].id)["file"]
    assert (info["title"], info["mimetype"], info["size"]) == ("A dog", "image/png", len(dog))
    assert (info["original_w"], info["original_h"], info["user"]) == (64, 48, "U0BOT")
    assert http_get(info["url_private_download"], emu.bot_token)[2] == dog
    status, headers, thumbnail = http_get(info["thumb_64"], emu.bot_token)
    assert headers["Content-Type"] == "image/png" and thumbnail.startswith(b"\x89PNG")


def test_an_upload_shorter_than_announced_is_rejected(client, emu):
    ticket = client.files_getUploadURLExternal(filename="cut.png", length=10)

    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(urllib.request.Request(ticket["upload_url"], data=b"12345", method="POST"))
    with pytest.raises(SlackApiError, match="file_not_found"):
        client.files_completeUploadExternal(files=[{"id": ticket["file_id"], "title": "cut"}], channel_id=CHANNEL)

    assert rejected.value.code == 400
    assert emu.uploads() == []


def test_a_multipart_upload_like_the_docs_curl_example_is_accepted(client, emu):
    ticket = client.files_getUploadURLExternal(filename="notes.txt", length=5)
    boundary = "emulator-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="filename"; filename="notes.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    answer = urllib.request.urlopen(urllib.request.Request(ticket["upload_url"], data=body, headers=headers))
    client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id=CHANNEL)

    assert answer.read() == b"OK - 5"
    assert emu.wait_for_upload(CHANNEL).contents == [b"hello"]


def test_a_rate_limited_call_is_retried_by_the_sdk_and_then_succeeds(emu):
    patient = WebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[RateLimitErrorRetryHandler()])
    emu.rate_limit("chat.postMessage", times=1)

    patient.chat_postMessage(channel=CHANNEL, text="eventually")

    calls = emu.api_calls("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert [m.text for m in emu.messages(CHANNEL)] == ["eventually"]
    emu.rate_limit("chat.postMessage", times=1)
    with pytest.raises(SlackApiError) as impatient:
        WebClient(token=emu.bot_token, base_url=emu.api_url).chat_postMessage(channel=CHANNEL, text="now")
    assert impatient.value.response.status_code == 429
    assert impatient.value.response.headers["Retry-After"] == "1"


def test_unknown_retired_and_unauthorized_methods_fail_loudly(client, emu):
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("findimage.search")
    with pytest.raises(SlackApiError, match="method_deprecated"):
        client.api_call("files.upload", params={"channels": CHANNEL, "content": "x"})
    emu.revoke_scope("files:read")
    with pytest.raises(SlackApiError) as missing:
        client.files_info(file=emu.add_file(b"x", "x.txt")["id"])
    assert (missing.value.response["error"], missing.value.response["needed"]) == ("missing_scope", "files:read")
    emu.inject_error("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="C0PRIVATE", text="hi")


# ---------------------------------------------------------------------------- hosted files


def test_a_download_without_the_bot_token_gets_the_sign_in_page(emu):
    photo = emu.add_file(png_bytes(), "holiday.png", user=ALICE)

    anonymous = http_get(photo["url_private_download"])
    stranger = http_get(photo["url_private_download"], token="xoxb-someone-else")
    bot = http_get(photo["url_private_download"], token=emu.bot_token)

    for status, headers, body in (anonymous, stranger):
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"Sign in to findimage-test.slack.com" in body
    assert bot[2] == emu.file_content(photo["id"]) and bot[1]["Content-Type"] == "image/png"
    # a download is recorded once the emulator has finished sending it
    emu.wait_for(lambda: [d.authorized for d in emu.downloads(photo["id"])] == [False, False, True])


def test_a_token_without_files_read_always_gets_the_sign_in_page(emu):
    photo = emu.add_file(png_bytes(), "holiday.png", user=ALICE)
    emu.revoke_scope("files:read")

    direct = http_get(photo["url_private"], token=emu.bot_token)
    emu.files_redirect_to_login = True
    redirected = http_get(photo["url_private"], token=emu.bot_token)  # urllib follows the 302

    assert b"Sign in to" in direct[2] and b"Sign in to" in redirected[2]
    assert redirected[1]["Content-Type"].startswith("text/html")


def test_a_huge_slow_file_announces_its_size_and_an_early_hang_up_is_noticed(emu):
    huge = emu.add_file(name="huge.png", mimetype="image/png", size=200 * 1024 * 1024, chunk_delay=0.001)

    request = urllib.request.Request(huge["url_private_download"], headers={"Authorization": f"Bearer {emu.bot_token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        announced = int(response.headers["Content-Length"])
        response.read(1024)  # the app sees the size and gives up

    assert announced == huge["size"] == 200 * 1024 * 1024
    download = emu.wait_for(lambda: next(iter(emu.downloads(huge["id"])), None), timeout=10)
    assert not download.complete and download.bytes_sent < huge["size"]


# ---------------------------------------------------------------------------- Slack calling the app


@contextmanager
def capturing_server():
    """A bare HTTP endpoint recording exactly what Slack sent it."""
    seen: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_requests_to_the_app_are_signed_exactly_like_slack_signs_them(emu):
    verifier = SignatureVerifier(emu.signing_secret)
    with capturing_server() as (url, seen):
        emu.send_slash_command(url, text="red bicycle", user_id=ALICE)
        emu.send_event(url, emu.user_message(CHANNEL, "hello"), retry_num=2)
        emu.send_slash_command(url, text="late", timestamp=int(time.time()) - 600)

    (command_headers, command_body), (event_headers, event_body), (late_headers, late_body) = seen
    for headers, body in seen[:2]:
        assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("another-secret").is_valid(
        command_body, command_headers["X-Slack-Request-Timestamp"], command_headers["X-Slack-Signature"]
    )
    assert not verifier.is_valid(
        late_body, late_headers["X-Slack-Request-Timestamp"], late_headers["X-Slack-Signature"]
    )
    assert b"command=%2Ffindimage" in command_body and b"text=red+bicycle" in command_body
    envelope = json.loads(event_body)
    assert envelope["type"] == "event_callback" and envelope["event"]["text"] == "hello"
    assert (event_headers["X-Slack-Retry-Num"], event_headers["X-Slack-Retry-Reason"]) == ("2", "http_timeout")


def test_a_bolt_app_over_http_gets_a_command_and_answers_through_its_response_url_and_the_web_api(emu):
    app, _ = minimal_bolt_app(emu)
    with served_over_http(app) as url:
        delivery = emu.send_slash_command(url, text="red bicycle", user_id=ALICE, channel_id=CHANNEL)

        searching = emu.wait_for_response(containing="red bicycle")
        found = emu.wait_for_message(CHANNEL, containing="Found 3 images")

    assert delivery.status == 200
    assert searching.ephemeral and searching.user_id == ALICE and searching.url == delivery.response_url
    assert found.text == "Found 3 images for red bicycle" and not found.ephemeral


def test_a_bolt_app_gets_a_file_share_then_its_own_upload_echoed_and_a_retry_as_slack_sends_them(emu):
    app, retries_seen = minimal_bolt_app(emu)
    photo = emu.add_file(png_bytes(color="blue"), "beach.png", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], text="where is this?", user=ALICE)
    with served_over_http(app) as url:
        first = emu.send_event(url, posted, event_id="Ev0PHOTO")
        answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"])
        emu.send_event(url, emu.bot_message_event(CHANNEL, files=answer))  # Slack echoes the bot's own upload
        emu.send_event(url, posted, event_id="Ev0PHOTO", retry_num=1, retry_reason="http_timeout")
        emu.wait_for(lambda: len(emu.uploads()) == 2, what="the answer to the retried event")

    assert first.status == 200
    assert posted["files"][0]["url_private_download"] == photo["url_private_download"]
    assert answer.names == ["match-beach.png"] and answer.contents == [emu.file_content(photo["id"])]
    assert answer.initial_comment == "Closest archive match"
    assert retries_seen == [None, "1"]  # the bot's own file_share never reached the listener


def test_bolt_rejects_a_forged_request_and_answers_the_url_challenge(emu):
    app, _ = minimal_bolt_app(emu)
    with served_over_http(app) as url:
        forged = emu.send_slash_command(url, text="x", signing_secret="not-the-secret")
        challenge = emu.send_url_verification(url)

    assert forged.status == 401 and emu.responses() == []
    assert challenge.status == 200 and challenge.json() == {"challenge": challenge.payload["challenge"]}


def test_a_response_url_accepts_five_posts_only(emu):
    url = emu.new_response_url(CHANNEL, ALICE)

    def respond(text: str) -> bytes:
        body = json.dumps({"text": text, "response_type": "in_channel"}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.read()

    assert [respond(f"#{n}") for n in range(5)] == [b"ok"] * 5
    with pytest.raises(urllib.error.HTTPError) as sixth:
        respond("#5")

    assert sixth.value.code == 404
    assert [r.accepted for r in emu.responses(url)] == [True] * 5 + [False]
    assert not emu.responses(url)[0].ephemeral


# ---------------------------------------------------------------------------- Socket Mode


@contextmanager
def connected_over_socket_mode(app: App, emu: SlackEmulator, client_library: str = "builtin"):
    """Run the Bolt app with a real SocketModeHandler connected to the emulator."""
    if client_library == "builtin":
        from slack_bolt.adapter.socket_mode import SocketModeHandler
    else:
        from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
    handler = SocketModeHandler(app, emu.app_token)
    handler.connect()
    try:
        emu.wait_for_socket_client()
        yield handler
    finally:
        if client_library == "builtin":
            handler.close()
        else:  # websocket-client's reader may sit up to 10 s in select() after close(): don't wait for it
            threading.Thread(target=handler.close, daemon=True).start()


@pytest.mark.parametrize("client_library", ["builtin", "websocket_client"])
def test_a_bolt_app_over_socket_mode_gets_a_command_and_a_file_share_as_slack_sends_them(emu, client_library):
    app, _ = minimal_bolt_app(emu)
    photo = emu.add_file(png_bytes(color="green"), "forest.png", user=ALICE)
    with connected_over_socket_mode(app, emu, client_library):
        command_ack = emu.socket_slash_command("forest", user_id=ALICE)
        searching = emu.wait_for_response(containing="forest")
        posted = emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
        event_ack = emu.socket_event(posted)
        answer = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"])

    assert event_ack.envelope["type"] == "events_api" and event_ack.envelope["payload"]["event"]["ts"] == posted["ts"]
    assert command_ack.envelope["type"] == "slash_commands" and command_ack.envelope["accepts_response_payload"]
    assert searching.url == command_ack.envelope["payload"]["response_url"] and searching.ephemeral
    assert answer.contents == [emu.file_content(photo["id"])]


def test_the_socket_mode_client_reconnects_when_slack_asks_it_to(emu):
    app, _ = minimal_bolt_app(emu)
    with connected_over_socket_mode(app, emu):
        emu.socket_disconnect()
        emu.wait_for_socket_client(connections_opened=2)
        ack = emu.socket_slash_command("after reconnect")
        emu.wait_for_response(containing="after reconnect")

    # the envelope on the new connection is acked at all (that the bot acks before answering is tested
    # in test_bot_socket_mode, with its answers held)
    assert ack.envelope is not None and ack.envelope["payload"]["text"] == "after reconnect"
    assert len(emu.api_calls("apps.connections.open")) == 2


def test_a_dropped_connection_is_gone_from_the_emulator_and_the_client_comes_back(emu):
    app, _ = minimal_bolt_app(emu)
    with connected_over_socket_mode(app, emu):
        emu.socket_drop()
        emu.wait_for(lambda: emu.socket_connections == 0, 10, "the dropped connection to be gone")
        emu.wait_for_socket_client(timeout=60, connections_opened=2)
        ack = emu.socket_slash_command("after the drop")
        emu.wait_for_response(containing="after the drop")

    assert ack.envelope["payload"]["text"] == "after the drop"
    assert len(emu.api_calls("apps.connections.open")) == 2


# ---------------------------------------------------------------------------- real payload shapes

try:
    from tests.slack_emulator.fixtures import fixture, keys_of, names, shape, source
except ImportError:  # pragma: no cover
    from slack_emulator.fixtures import fixture, keys_of, names, shape, source


def without_thumbnails(keys) -> set:
    """Which thumb_* a file object has depends on the image's size; everything else is fixed."""
    return {k for k in keys if not k.startswith("thumb_") or k == "thumb_tiny"}


def test_every_fixture_names_the_real_payload_it_was_written_from():
    assert len(names()) >= 20
    for name in names():
        assert source(name).strip(), name
        assert "slackapi/" in source(name) or "MercuryTechnologies/" in source(name) or "https://" in source(name) \
            or source(name).startswith("interactivity/"), name


def test_a_posted_photo_has_exactly_the_fields_of_a_real_file_share(emu):
    photo = emu.add_file(png_bytes(1134, 362), "photo.png", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], text="Hi there!", user=ALICE)
    envelope = emu.event_callback(posted)

    assert list(envelope) == keys_of("events/message_file_share")
    assert list(posted) == keys_of("events/message_file_share", "event")
    assert "team" not in posted and "user_team" not in posted, "a real file_share names only its user"
    assert without_thumbnails(posted["files"][0]) == without_thumbnails(
        keys_of("events/message_file_share", "event", "files")
    )
    assert shape(posted["files"][0]) == shape(fixture("events/message_file_share")["event"]["files"][0])


def test_in_a_slack_connect_channel_files_are_stripped_and_the_envelope_names_the_actors_team(emu):
    emu.share_channel_externally("C0CONNECT", "T0PARTNER")
    emu.add_user("U0GUEST", "T0PARTNER")
    photo = emu.add_file(png_bytes(), "guest.png", user="U0GUEST")
    posted = emu.post_user_message_with_files("C0CONNECT", [photo], text="look", user="U0GUEST")
    envelope = emu.event_callback(posted)
    said = emu.user_message("C0CONNECT", "Hey!", "U0GUEST")

    assert posted["files"] == [{"id": photo["id"], "mode": "file_access", "file_access": "check_file_info",
                                "created": 0, "timestamp": 0, "user": ""}]
    assert list(envelope) == [k for k in keys_of("events/message_slack_connect") if k != "enterprise_id"]
    assert (envelope["team_id"], envelope["context_team_id"], envelope["is_ext_shared_channel"]) == (
        "T0PARTNER", emu.team_id, True)
    assert envelope["authorizations"][0]["team_id"] == emu.team_id
    assert list(said) == keys_of("events/message", "event") and said["team"] == "T0PARTNER"


def test_interactions_have_exactly_the_fields_of_real_ones(emu, client):
    posted = client.chat_postMessage(channel=CHANNEL, text="answer", blocks=[{"type": "actions", "elements": [
        {"type": "button", "action_id": "b", "text": {"type": "plain_text", "text": "B"}, "value": "v"}]}])
    (message,) = emu.messages(CHANNEL)
    click = emu.block_actions_payload(message, "b", ALICE)
    shortcut = emu.message_action_payload(emu.user_message(CHANNEL, "hello", ALICE), CHANNEL, ALICE)
    command = emu.slash_command_payload("x", user_id=ALICE, channel_id=CHANNEL)

    for path in ((), ("container",), ("message",), ("actions",), ("user",), ("team",)):
        node = click
        for step in path:
            node = node[step][0] if isinstance(node[step], list) else node[step]
        assert list(node) == keys_of("interactivity/block_actions", *path), path
    assert list(shortcut) == keys_of("interactivity/message_action")
    assert shortcut["user"] == {"id": ALICE, "name": "alice"}, "a real message shortcut's user has no team_id"
    assert list(command) == keys_of("commands/slash_command")
    assert posted["ts"] == click["container"]["message_ts"]


def test_a_top_level_message_with_replies_carries_its_own_ts_as_thread_ts(emu, client):
    blocks = [{"type": "actions", "elements": [{"type": "button", "action_id": "b", "text": {"type": "plain_text",
                                                                                          "text": "B"}}]}]
    top = client.chat_postMessage(channel=CHANNEL, text="answer", blocks=blocks)
    emu.user_message(CHANNEL, "nice!", "U0BOB", thread_ts=top["ts"])
    client.chat_postMessage(channel=CHANNEL, thread_ts=top["ts"], text="reply", blocks=blocks)
    parent, reply = emu.messages(CHANNEL)

    on_parent = emu.block_actions_payload(parent, "b", ALICE)
    on_reply = emu.block_actions_payload(reply, "b", ALICE)

    assert on_parent["message"]["thread_ts"] == on_parent["message"]["ts"] == top["ts"]
    assert on_parent["message"]["reply_count"] == 2 and "thread_ts" not in on_parent["container"]
    assert list(on_parent["message"]) == keys_of("interactivity/block_actions_thread_parent", "message")
    assert on_reply["container"]["thread_ts"] == on_reply["message"]["thread_ts"] == top["ts"]
    assert list(on_reply["container"]) == keys_of("interactivity/block_actions_in_thread", "container")
    assert list(on_reply["message"]) == keys_of("interactivity/block_actions_in_thread", "message")


def test_conversations_the_bot_is_not_in_answer_like_slack(emu, client):
    emu.add_conversation("C0PRIVATE", "private", member=False)
    emu.add_conversation("D0OTHERS1", "im", member=False)
    emu.add_conversation("C0PUBLIC", "public", member=False)

    for hidden in ("C0PRIVATE", "D0OTHERS1"):
        with pytest.raises(SlackApiError, match="channel_not_found"):
            client.conversations_info(channel=hidden)
        with pytest.raises(SlackApiError, match="channel_not_found"):
            client.chat_postMessage(channel=hidden, text="hi")
    public = client.conversations_info(channel="C0PUBLIC")["channel"]
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="C0PUBLIC", text="hi")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.files_upload_v2(content="x", filename="x.txt", channel="C0PUBLIC")

    assert public["is_member"] is False and public["is_private"] is False
    assert list(public) == keys_of("web_api/conversations.info", "channel")
    emu.add_conversation("C0NEWPRIV", "private")  # a private channel with a C... id needs groups:read
    emu.revoke_scope("groups:read")
    with pytest.raises(SlackApiError) as missing:
        client.conversations_info(channel="C0NEWPRIV")
    assert missing.value.response["needed"] == "groups:read"
    emu.share_channel_externally("C0PENDING", pending=True)
    pending = client.conversations_info(channel="C0PENDING")["channel"]
    assert pending["is_pending_ext_shared"] is True and pending["is_ext_shared"] is False
    assert list(client.conversations_info(channel=emu.dm_channel(ALICE))["channel"]) == keys_of(
        "web_api/conversations.info_im", "channel")


def test_users_conversations_lists_the_bots_channels_in_pages_with_the_documented_objects(emu, client):
    emu.add_conversation("C0PHOTOS", "public", name="photos")
    emu.add_conversation("C0SECRET", "private", name="secret")
    emu.add_conversation("C0ELSE", "public", member=False)
    emu.add_conversation("G0GROUPDM", "mpim", name="mpdm-alice--bob--findimage-1")
    dm = emu.dm_channel(ALICE)

    first = client.users_conversations(types="public_channel,private_channel", limit=1)
    second = client.users_conversations(types="public_channel,private_channel", limit=1,
                                        cursor=first["response_metadata"]["next_cursor"])
    assert [c["name"] for c in first["channels"] + second["channels"]] == ["photos", "secret"]
    assert base64.b64decode(first["response_metadata"]["next_cursor"]) == b"team:C0SECRET"
    assert second["response_metadata"]["next_cursor"] == ""
    assert list(first["channels"][0]) == keys_of("web_api/users.conversations", "channels")
    assert "is_member" not in first["channels"][0] and second["channels"][0]["is_private"] is True
    assert [c["id"] for c in client.users_conversations()["channels"]] == ["C0PHOTOS"], "public_channel by default"
    mixed = client.users_conversations(types="im,mpim")["channels"]
    assert [c["id"] for c in mixed] == [dm, "G0GROUPDM"]
    documented = fixture("web_api/users.conversations_mixed")["channels"]
    assert [list(c) for c in mixed] == [list(documented[1]), list(documented[0])], "a direct message, a group DM"
    assert mixed[0]["user"] == ALICE

    emu.revoke_scope("groups:read")
    with pytest.raises(SlackApiError) as missing:
        client.users_conversations(types="public_channel,private_channel")
    assert (missing.value.response["error"], missing.value.response["needed"]) == ("missing_scope", "groups:read")
    with pytest.raises(SlackApiError, match="invalid_types"):
        client.users_conversations(types="public_channel,channels")


def test_users_info_answers_with_the_real_user_object(emu, client):
    emu.add_user("U0GUEST", "T0PARTNER")
    emu.forget_user("U0GONE")

    alice = client.users_info(user=ALICE)["user"]
    guest = client.users_info(user="U0GUEST")["user"]
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U0GONE")
    emu.revoke_scope("users:read")
    with pytest.raises(SlackApiError, match="missing_scope"):
        client.users_info(user=ALICE)

    assert list(alice) == keys_of("web_api/users.info", "user")
    assert (alice["team_id"], alice["profile"]["team"]) == (emu.team_id, emu.team_id)
    assert guest["team_id"] == "T0PARTNER" and guest["is_stranger"] is True


def test_users_info_tells_the_locale_only_when_asked_with_include_locale(emu, client):
    emu.add_user("U0HANNA", locale="de-DE")

    plain = client.users_info(user="U0HANNA")["user"]
    hanna = client.users_info(user="U0HANNA", include_locale=True)["user"]
    alice = client.users_info(user=ALICE, include_locale=True)["user"]

    assert "locale" not in plain
    assert hanna["locale"] == "de-DE" and alice["locale"] == "en-US"  # an undeclared user: Slack's default
    assert list(hanna) == keys_of("web_api/users.info", "user") + ["locale"]


def test_files_info_answers_deleted_and_hidden_files_with_slacks_errors(emu, client):
    gone, hidden = emu.add_file(png_bytes(), "gone.png"), emu.add_file(png_bytes(), "hidden.png")
    kept = emu.add_file(png_bytes(), "kept.png")
    emu.delete_file(gone["id"])
    emu.delete_file(hidden["id"], hidden=True)

    with pytest.raises(SlackApiError, match="file_deleted"):
        client.files_info(file=gone["id"])
    with pytest.raises(SlackApiError, match="file_not_found"):
        client.files_info(file=hidden["id"])
    with pytest.raises(urllib.error.HTTPError) as download:
        http_get(gone["url_private_download"], emu.bot_token)

    assert download.value.code == 404
    info = client.files_info(file=kept["id"])
    assert set(info.data) == {"ok", "file", "comments", "response_metadata"}
    assert without_thumbnails(info["file"]) >= without_thumbnails(keys_of("web_api/files.info", "file")) - {
        "deanimate_gif", "pjpeg", "thumb_360_gif"}, "gif-only renditions aside"


def test_socket_mode_envelopes_accept_a_response_payload_only_for_slash_commands(emu):
    app, _ = minimal_bolt_app(emu)

    @app.shortcut("find_similar")
    def shortcut(ack):
        ack()

    with connected_over_socket_mode(app, emu):
        command = emu.socket_slash_command("forest", user_id=ALICE)
        event = emu.socket_event(emu.user_message(CHANNEL, "hello", ALICE))
        interaction = emu.socket_interaction(emu.message_action_payload(emu.user_message(CHANNEL, "x"), CHANNEL))

    assert [a.envelope["accepts_response_payload"] for a in (command, event, interaction)] == [True, False, False]
    for ack in (command, event, interaction):
        kind = ack.envelope["type"]
        assert list(ack.envelope) == keys_of(f"socket_mode/{kind}"), kind


# ---------------------------------------------------------------------------- history (the bot's memory)


def read_history(client, channel: str, **args) -> tuple[list, list]:
    """Every page of a channel's history, as a backfill reads it: (messages, the pages' answers)."""
    messages, pages, cursor = [], [], None
    while True:
        page = client.conversations_history(channel=channel, cursor=cursor, **args)
        pages.append(page.data)
        messages += page["messages"]
        if not page["has_more"]:
            return messages, pages
        cursor = page["response_metadata"]["next_cursor"]


def test_a_backfill_pages_through_the_history_newest_first_and_sees_only_thread_parents(emu, client):
    first = emu.user_message(CHANNEL, "morning", ALICE)
    photo = emu.post_user_message_with_files(CHANNEL, [emu.add_file(png_bytes(), "cat.png", user=ALICE)],
                                             text="our cat", user=ALICE)
    emu.user_message(CHANNEL, "so cute", "U0BOB", thread_ts=photo["ts"])  # a reply: not in history
    posted = client.chat_postMessage(channel=CHANNEL, text="Found 3 images")
    client.files_upload_v2(content=png_bytes(color="blue"), filename="match.png", channel=CHANNEL,
                           initial_comment="Closest archive match")
    upload = emu.wait_for_upload(CHANNEL)
    emu.user_message("C0ELSEWHERE", "not here", ALICE)

    messages, pages = read_history(client, CHANNEL, limit=2)

    assert [m["ts"] for m in messages] == [upload.ts, posted["ts"], photo["ts"], first["ts"]]
    assert [p["has_more"] for p in pages] == [True, False]
    assert list(pages[0]) == keys_of("web_api/conversations.history")
    assert "response_metadata" not in pages[-1], "the last page has no cursor"
    cursor = pages[0]["response_metadata"]["next_cursor"]
    assert base64.b64decode(cursor).decode() == "next_ts:" + photo["ts"].replace(".", "")
    parent = messages[2]
    assert (parent["reply_count"], parent["reply_users"], parent["thread_ts"]) == (1, ["U0BOB"], photo["ts"])
    assert "channel" not in parent and "event_ts" not in parent, "history has no Events API fields"
    assert without_thumbnails(parent["files"][0]) == without_thumbnails(photo["files"][0])
    assert messages[0]["files"][0]["id"] == upload.files[0].id and messages[0]["bot_id"] == emu.bot_id
    assert messages[0]["text"] == "Closest archive match"
    replies = client.conversations_replies(channel=CHANNEL, ts=photo["ts"])["messages"]
    assert [m["text"] for m in replies] == ["our cat", "so cute"]
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.conversations_replies(channel=CHANNEL, ts="1.000001")


def test_oldest_latest_and_inclusive_bound_the_history(emu, client):
    seeded = emu.seed_history(CHANNEL, 10, start_ts=1700000000, step=1.0)
    oldest, latest = seeded.ts[3], seeded.ts[6]

    between = client.conversations_history(channel=CHANNEL, oldest=oldest, latest=latest)
    inclusive = client.conversations_history(channel=CHANNEL, oldest=oldest, latest=latest, inclusive=True)
    newest_two = client.conversations_history(channel=CHANNEL, limit=2)

    assert [m["ts"] for m in between["messages"]] == [seeded.ts[5], seeded.ts[4]]
    assert [m["ts"] for m in inclusive["messages"]] == list(reversed(seeded.ts[3:7]))
    assert (between["oldest"], between["latest"]) == (oldest, latest), "Slack echoes the bounds"
    assert [m["ts"] for m in newest_two["messages"]] == [seeded.ts[9], seeded.ts[8]] and newest_two["has_more"]
    for bad, error in (({"oldest": "yesterday"}, "invalid_ts_oldest"), ({"latest": "1.2.3"}, "invalid_ts_latest"),
                       ({"cursor": "not-a-cursor"}, "invalid_cursor")):
        with pytest.raises(SlackApiError, match=error):
            client.conversations_history(channel=CHANNEL, **bad)


def test_history_is_readable_only_where_slack_lets_the_bot_read_it(emu, client):
    emu.add_conversation("C0PUBLIC", "public", member=False)
    emu.add_conversation("C0PRIVATE", "private", member=False)
    emu.add_conversation("G0GROUPDM", "mpim")

    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.conversations_history(channel="C0PUBLIC")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.conversations_history(channel="C0PRIVATE")
    with pytest.raises(SlackApiError) as group_dm:
        client.conversations_history(channel="G0GROUPDM")
    emu.revoke_scope("im:history")
    with pytest.raises(SlackApiError) as direct:
        client.conversations_history(channel=emu.dm_channel(ALICE))

    assert group_dm.value.response["needed"] == "mpim:history", "not among the app's scopes"
    assert direct.value.response["needed"] == "im:history"


def test_seeding_ten_thousand_messages_takes_under_two_seconds_and_reads_back_whole(emu, client):
    started = time.monotonic()
    seeded = emu.seed_history(CHANNEL, 10_000, files_every=10, user=ALICE)
    took = time.monotonic() - started
    messages, pages = read_history(client, CHANNEL, limit=999)

    assert took < 2.0, f"seeding took {took:.2f}s"
    assert len(pages) == 11 and len(messages) == 10_000 and len(seeded.file_ids) == 1000
    assert [m["ts"] for m in messages] == list(reversed(seeded.ts))
    with_files = [m for m in messages if "files" in m]
    assert [m["files"][0]["id"] for m in with_files] == list(reversed(seeded.file_ids))
    assert with_files[0]["subtype"] == "file_share" and with_files[0]["user"] == ALICE
    first, second = (http_get(m["files"][0]["url_private_download"], emu.bot_token)[2] for m in with_files[:2])
    assert first.startswith(b"\x89PNG") and first != second, "each seeded image is an image of its own"
    assert len(client.conversations_history(channel=CHANNEL, limit=5000)["messages"]) == 999, "Maximum of 999"
    assert len(client.conversations_history(channel=CHANNEL)["messages"]) == 100, "Default: 100"


# ---------------------------------------------------------------------------- rate limits


def test_a_backfill_honoring_retry_after_gets_every_page_through_a_tier_limit(emu):
    emu.clock_speed = 60  # a minute of Slack's time per real second
    emu.limit_rate("conversations.history", per_minute=2)
    emu.seed_history(CHANNEL, 50)
    patient = WebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[RateLimitErrorRetryHandler()])

    started = time.monotonic()
    messages, pages = read_history(patient, CHANNEL, limit=20)
    took = time.monotonic() - started

    calls = emu.api_calls("conversations.history")
    assert len(messages) == 50 and len(pages) == 3
    assert [c.status for c in calls] == [200, 200, 429, 200]
    assert calls[2].response == {"ok": False, "error": "ratelimited"} and calls[2].retry_after == 1
    assert emu.rate_limited_calls() == [calls[2]]
    assert took < 4, "Retry-After is given in real seconds of the sped-up clock"


def test_a_non_marketplace_app_reads_15_messages_a_minute(emu, client):
    # https://docs.slack.dev/changelog/2025/05/29/rate-limit-changes-for-non-marketplace-apps/: 1 request per
    # minute for conversations.history and .replies, "The maximum and default for the limit parameter has been
    # reduced to 15 objects."
    emu.non_marketplace_app = True
    seeded = emu.seed_history(CHANNEL, 20)

    first = client.conversations_history(channel=CHANNEL, limit=200)
    with pytest.raises(SlackApiError) as too_soon:
        client.conversations_history(channel=CHANNEL, cursor=first["response_metadata"]["next_cursor"])
    emu.advance_clock(61)
    second = client.conversations_history(channel=CHANNEL, cursor=first["response_metadata"]["next_cursor"])
    emu.clock_speed = 120
    patient = WebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[RateLimitErrorRetryHandler()])
    thread = patient.conversations_replies(channel=CHANNEL, ts=seeded.ts[0])  # its own minute
    again = patient.conversations_history(channel=CHANNEL)  # waits out the minute: half a real second

    assert len(first["messages"]) == 15 and first["has_more"], "limit=200 is capped to 15"
    assert too_soon.value.response.status_code == 429
    assert 55 <= int(too_soon.value.response.headers["Retry-After"]) <= 60
    assert len(second["messages"]) == 5 and not second["has_more"]
    assert len(again["messages"]) == 15, "the default limit is 15 too"
    assert [m["ts"] for m in thread["messages"]] == [seeded.ts[0]]
    assert [c.status for c in emu.api_calls("conversations.history")] == [200, 429, 200, 429, 200]


# ---------------------------------------------------------------------------- changes and their events


def test_events_about_changes_have_exactly_the_fields_of_real_ones(emu):
    emu.add_conversation("C0NEWPRIV", "private")
    photo = emu.add_file(png_bytes(), "cat.png", user=ALICE)
    posted = emu.post_user_message_with_files(CHANNEL, [photo], text="our cat", user=ALICE)
    said = emu.user_message(CHANNEL, "hello", ALICE)
    built = {
        "file_change": emu.change_file(photo["id"], title="Our cat"),
        "message_changed": emu.edit_message(CHANNEL, said["ts"], "hello all"),
        "message_deleted": emu.delete_message(CHANNEL, posted["ts"]),
        "file_deleted": emu.delete_file(photo["id"]),
        "member_joined_channel": emu.member_joined_channel("C0JOINED", inviter=ALICE),
        "member_left_channel": emu.member_left_channel("C0JOINED"),
        "channel_left": emu.channel_left(CHANNEL, actor=ALICE),
        "group_left": emu.channel_left("C0NEWPRIV", actor=ALICE),
        "channel_archive": emu.archive_channel("C0ARCHIVE", user=ALICE),
        "group_archive": emu.archive_channel("C0NEWPRIV", user=ALICE),
        "channel_deleted": emu.delete_channel("C0ARCHIVE", actor=ALICE),
        "group_deleted": emu.delete_channel("C0NEWPRIV", actor=ALICE),
    }

    for name, event in built.items():
        recorded = f"events_pending/{name}" if name == "member_joined_channel" else f"events/{name}"
        assert list(event) == keys_of(recorded, "event"), name
        assert list(emu.event_callback(event)) == keys_of(recorded), name
        assert event.get("type") == fixture(recorded)["event"]["type"], name
    assert built["file_deleted"]["channel_ids"] == [CHANNEL]
    assert set(built["message_changed"]["message"]) == set(keys_of("events/message_changed", "event",
                                                                   "message"))
    assert built["message_changed"]["message"]["edited"]["user"] == ALICE
    assert built["message_deleted"]["previous_message"]["files"][0]["id"] == photo["id"], "with its files"
    assert built["message_deleted"]["deleted_ts"] == posted["ts"] and built["message_deleted"]["hidden"] is True
    assert (built["member_joined_channel"]["channel_type"], built["group_left"]["channel"]) == ("C", "C0NEWPRIV")
    assert "inviter" not in emu.member_joined_channel(CHANNEL, "U0BOB", inviter=None)


def test_a_deleted_file_is_a_tombstone_in_history_and_edits_and_deletions_show(emu, client):
    gone, hidden = emu.add_file(png_bytes(), "gone.png", user=ALICE), emu.add_file(png_bytes(), "hid.png", user=ALICE)
    both = emu.post_user_message_with_files(CHANNEL, [gone, hidden], text="two photos", user=ALICE)
    typo = emu.user_message(CHANNEL, "helo", ALICE)
    doomed = emu.user_message(CHANNEL, "oops", ALICE)

    emu.delete_file(gone["id"])
    emu.delete_file(hidden["id"], hidden=True)
    emu.edit_message(CHANNEL, typo["ts"], "hello")
    emu.delete_message(CHANNEL, doomed["ts"])
    history = {m["ts"]: m for m in client.conversations_history(channel=CHANNEL)["messages"]}

    assert doomed["ts"] not in history
    assert history[both["ts"]]["files"][0] == {"id": gone["id"], "mode": "tombstone"}
    assert history[both["ts"]]["files"][1]["file_access"] == "check_file_info"
    with pytest.raises(SlackApiError, match="file_deleted"):
        client.files_info(file=gone["id"])
    with pytest.raises(SlackApiError, match="file_not_found"):
        client.files_info(file=hidden["id"])
    assert history[typo["ts"]]["text"] == "hello" and history[typo["ts"]]["edited"]["user"] == ALICE


def test_archived_deleted_and_left_channels_answer_like_slack(emu, client):
    emu.user_message("C0OLD", "a photo from 2019", ALICE)
    emu.archive_channel("C0OLD")

    archived = client.conversations_info(channel="C0OLD")["channel"]
    kept = client.conversations_history(channel="C0OLD")["messages"]
    with pytest.raises(SlackApiError, match="is_archived"):
        client.chat_postMessage(channel="C0OLD", text="hi")
    emu.delete_channel("C0OLD")

    assert archived["is_archived"] is True and [m["text"] for m in kept] == ["a photo from 2019"]
    for call in (lambda: client.conversations_info(channel="C0OLD"),
                 lambda: client.conversations_history(channel="C0OLD"),
                 lambda: client.chat_getPermalink(channel="C0OLD", message_ts=kept[0]["ts"])):
        with pytest.raises(SlackApiError, match="channel_not_found"):
            call()
    emu.add_conversation("C0SECRET", "private")
    emu.member_left_channel(CHANNEL)
    emu.channel_left("C0SECRET")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.conversations_history(channel=CHANNEL)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.conversations_history(channel="C0SECRET")
    emu.member_joined_channel(CHANNEL)
    assert client.conversations_history(channel=CHANNEL)["ok"] is True


def test_permalinks_point_at_the_message_and_into_its_thread(emu, client):
    top = client.chat_postMessage(channel=CHANNEL, text="answer")
    reply = emu.user_message(CHANNEL, "thanks", ALICE, thread_ts=top["ts"])
    photo = emu.add_file(png_bytes(), "cat.png", user=ALICE)

    link = client.chat_getPermalink(channel=CHANNEL, message_ts=top["ts"])
    in_thread = client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])["permalink"]
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_getPermalink(channel=CHANNEL, message_ts="1.000001")

    base = f"https://findimage-test.slack.com/archives/{CHANNEL}/p"
    assert list(link.data) == keys_of("web_api/chat.getPermalink")
    assert link["permalink"] == base + top["ts"].replace(".", "")
    assert in_thread == f"{base}{reply['ts'].replace('.', '')}?thread_ts={top['ts']}&cid={CHANNEL}"
    assert photo["permalink"] == f"https://findimage-test.slack.com/files/{ALICE}/{photo['id']}/cat.png"


# ---------------------------------------------------------------------------- image blocks showing Slack files


def image_block(**source) -> list:
    return [{"type": "image", "alt_text": "a remembered photo", **source}]


def test_an_image_block_may_show_a_slack_file_the_channel_can_see_and_nothing_else(emu, client):
    photo = emu.add_file(png_bytes(), "cat.png", user=ALICE)
    emu.post_user_message_with_files(CHANNEL, [photo], user=ALICE)
    gone, unshared = emu.add_file(png_bytes(), "gone.png"), emu.add_file(png_bytes(), "mine.png")
    emu.post_user_message_with_files(CHANNEL, [gone], user=ALICE)
    emu.delete_file(gone["id"])
    pdf = emu.add_file(b"%PDF-1.4", "doc.pdf", user=ALICE)
    emu.post_user_message_with_files(CHANNEL, [pdf], user=ALICE)

    for source in ({"slack_file": {"id": photo["id"]}}, {"slack_file": {"url": photo["url_private"]}},
                   {"slack_file": {"url": photo["permalink"]}}, {"image_url": "https://example.org/cat.png"}):
        assert client.chat_postMessage(channel=CHANNEL, text="match", blocks=image_block(**source))["ok"]
    refused = {}
    for name, blocks in {
        "unknown": image_block(slack_file={"id": "F0NOSUCHFILE"}),
        "deleted": image_block(slack_file={"id": gone["id"]}),
        "unshared": image_block(slack_file={"id": unshared["id"]}),
        "not an image": image_block(slack_file={"id": pdf["id"]}),
        "unknown url": image_block(slack_file={"url": "https://example.org/x.png"}),
        "id and url": image_block(slack_file={"id": photo["id"], "url": photo["url_private"]}),
        "both sources": image_block(slack_file={"id": photo["id"]}, image_url="https://example.org/cat.png"),
        "no source": image_block(),
        "no alt_text": [{"type": "image", "slack_file": {"id": photo["id"]}}],
        "accessory": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "accessory": {
            "type": "image", "slack_file": {"id": "F0NOSUCHFILE"}, "alt_text": "x"}}],
    }.items():
        with pytest.raises(SlackApiError) as error:
            client.chat_postMessage(channel=CHANNEL, text="match", blocks=blocks)
        refused[name] = error.value.response.data

    real = fixture("web_api/errors")["invalid_slack_file"]
    assert refused["unknown"] == real, "exactly what Slack answered in python-slack-sdk issue #1797"
    assert refused["deleted"] == refused["unshared"] == refused["not an image"] == real
    assert refused["unknown url"]["errors"] == ["invalid_url [json-pointer:/blocks/0/slack_file.url]"]
    assert refused["accessory"]["errors"] == ["invalid slack file [json-pointer:/blocks/0/accessory/slack_file]"]
    assert all(r["error"] == "invalid_blocks" and r["response_metadata"]["messages"] for r in refused.values())
    assert refused["no alt_text"]["errors"] == ["must provide a string [json-pointer:/blocks/0/alt_text]"]
    response_url = emu.new_response_url(CHANNEL, ALICE)
    body = json.dumps({"blocks": image_block(slack_file={"id": gone["id"]}), "response_type": "in_channel"})
    request = urllib.request.Request(response_url, data=body.encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(request, timeout=5)
    assert (rejected.value.code, rejected.value.read()) == (400, b"invalid_blocks")

"""The web process facing the internet, and the archive facing people outside the team: oversized and forged
requests, the health check, where the bot token may go, text that could ping a channel, and Slack Connect."""
from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request

from bot_support import ALICE, CHANNEL, FakeClock, recording_server, serve_bot, with_settings
from photos import jpeg_bytes

from bot.channels import CANNOT_CHECK_SCOPE, NOT_ENABLED, OTHER_TEAM, SHARED_CHANNEL
from bot.web.slack_events import MAX_BODY_BYTES
from findimage import __version__
from findimage.backends import open_store
from findimage.search import Searcher

PARTNER_TEAM = "T0PARTNER"


def raw_request(bot, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (request line and headers) and `body` over a socket; the status and body of the answer.

    The server must answer without waiting for more than what was sent: if it tried to read a body
    it was not sent, this would block until the socket timeout and fail the test.
    """
    with socket.create_connection(("127.0.0.1", bot.port), timeout=20) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def post_head(length: int | str, path: str = "/slack/events", **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: findimage.example.org", "Content-Type: application/json",
             f"Content-Length: {length}", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
             "Connection: close", ""]
    return "\n".join(lines)


# ---- request bodies ---------------------------------------------------------------------------------

def test_an_oversized_post_is_refused_with_413_before_its_body_is_read(bot):
    status, body = raw_request(bot, post_head(100_000_000), b"x" * 1024)  # announces 100 MB, sends 1 KB

    assert (status, body) == (413, b"Request bodies are limited to 256 KB.\n")
    assert bot.body_bytes_read == [("/slack/events", 0)]


def test_a_post_one_byte_over_the_limit_is_refused_and_one_at_the_limit_is_read(bot):
    over = raw_request(bot, post_head(MAX_BODY_BYTES + 1), b"x" * (MAX_BODY_BYTES + 1))
    at_limit = raw_request(bot, post_head(MAX_BODY_BYTES), b"x" * MAX_BODY_BYTES)  # read, then not signed

    assert over[0] == 413 and at_limit[0] == 401
    assert bot.body_bytes_read == [("/slack/events", 0), ("/slack/events", MAX_BODY_BYTES)]


def test_every_post_route_has_the_limit_and_a_broken_length_is_refused(bot):
    other_route = raw_request(bot, post_head(10**9, path="/images/upload"))
    unknown_small = raw_request(bot, post_head(2, path="/anything"), b"{}")
    broken = raw_request(bot, post_head("12abc"), b"{}")

    assert [other_route[0], unknown_small[0], broken[0]] == [413, 404, 400]
    assert [n for _, n in bot.body_bytes_read] == [0, 2, 0], "small bodies are read (bounded), large ones never"


def test_a_forged_request_is_logged_without_its_body(bot, emu, caplog):
    marker = "SECRET-MARKER-9f2c"
    with caplog.at_level(logging.DEBUG):
        forged = emu.send_slash_command(bot.events_url, text=f"find {marker}", channel_id=CHANNEL,
                                        signing_secret="guessed-secret")
        forged_event = emu.send_event(bot.events_url, emu.user_message(CHANNEL, marker), signing_secret="nope")
        no_headers = raw_request(bot, post_head(len(marker)), marker.encode())

    assert (forged.status, forged_event.status, no_headers[0]) == (401, 401, 401)
    refusals = [r for r in caplog.records if "without a valid Slack signature" in r.getMessage()]
    assert len(refusals) == 3
    assert marker not in caplog.text and all(marker not in r.getMessage() for r in caplog.records)


# ---- /healthz and /readyz ---------------------------------------------------------------------------

class CountingStore:
    """The real store, counting how often the readiness probe asks it."""

    def __init__(self, store):
        self._store = store
        self.counts = 0
        self.failure: Exception | None = None

    def count(self):
        self.counts += 1
        if self.failure is not None:
            raise self.failure
        return self._store.count()

    def __getattr__(self, name):
        return getattr(self._store, name)


def http_get(url: str):
    """(status, body): JSON parsed, text as it is."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            status, kind, body = answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        status, kind, body = error.code, error.headers["Content-Type"], error.read()
    return status, json.loads(body) if kind == "application/json" else body.decode()


ALIVE = (200, {"status": "ok", "version": __version__, "queued": 0})
READY = (200, "Ready: 7 documents in the archive.\n")
STORE_DOWN = (503, "Not ready: the store is not answering.\n")


def test_readiness_says_one_sentence_asks_the_store_once_per_five_seconds_and_the_health_check_never_asks(indexed):
    store, clock = CountingStore(open_store(indexed)), FakeClock()
    with serve_bot(indexed, Searcher(indexed, store=store), health_clock=clock) as running:
        first = [http_get(f"{running.base_url}/readyz") for _ in range(3)]
        alive = [http_get(f"{running.base_url}/healthz") for _ in range(3)]
        clock.advance(4.9)
        still_cached = http_get(f"{running.base_url}/readyz")
        asked_within_ttl = store.counts
        clock.advance(0.2)
        store.failure = RuntimeError("connection to https://elastic:secret@es.internal:9200 refused")
        after_ttl = [http_get(f"{running.base_url}/readyz")]  # the last answer at once; a new probe is started
        deadline = time.monotonic() + 15
        while after_ttl[-1][0] != 503 and time.monotonic() < deadline:
            after_ttl.append(http_get(f"{running.base_url}/readyz"))
        alive_while_down = http_get(f"{running.base_url}/healthz")

    assert first == [READY] * 3 and alive == [ALIVE] * 3
    assert still_cached == READY
    assert asked_within_ttl == 1 and store.counts == 2, "/healthz never asked the store"
    assert all(answer == READY for answer in after_ttl[:-1]), "until the new probe is in: the last answer"
    assert after_ttl[-1] == STORE_DOWN, "no exception text, no store address"
    assert alive_while_down == ALIVE, "a store that is down does not make the process dead"


def test_a_bot_whose_elasticsearch_is_gone_is_alive_and_not_ready_without_details(indexed):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    dead = with_settings(indexed, elasticsearch_url=f"http://127.0.0.1:{closed}")
    with serve_bot(dead) as running:
        ready = http_get(f"{running.base_url}/readyz")
        alive = http_get(f"{running.base_url}/healthz")

    assert ready == STORE_DOWN and str(closed) not in ready[1]
    assert alive == ALIVE


def test_a_bot_whose_archive_is_not_mounted_is_not_ready_and_does_not_say_where_it_looks(indexed, tmp_path):
    gone = with_settings(indexed, archive=tmp_path / "unmounted")
    with serve_bot(gone) as running:
        ready = http_get(f"{running.base_url}/readyz")
        alive = http_get(f"{running.base_url}/healthz")

    assert ready == (503, "Not ready: the archive folder is missing or cannot be read (is it mounted?).\n")
    assert alive == ALIVE


# ---- where the bot token goes -------------------------------------------------------------------------

def post_photo(emu, bot, *files, channel=CHANNEL, **options):
    posted = emu.post_user_message_with_files(channel, list(files), user=ALICE, **options)
    assert emu.send_event(bot.events_url, posted).status == 200
    return posted


def test_a_file_object_pointing_at_another_host_never_gets_the_token(bot, emu):
    with recording_server() as (elsewhere, seen):
        planted = emu.add_file(jpeg_bytes(seed=700), "planted.jpg", user=ALICE,
                               url_private=f"{elsewhere}/a.jpg", url_private_download=f"{elsewhere}/a.jpg")
        posted = post_photo(emu, bot, planted)
        reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing="planted.jpg", timeout=15)
        assert seen == [], "the other host got no request at all, so never the token"

    assert reply.text == ("`planted.jpg` is not served by Slack's file servers, so I did not download it; "
                          "upload the image itself to Slack and I will look again.")
    assert emu.uploads() == []


def test_an_external_file_is_not_downloaded_and_the_poster_is_told_why(bot, emu):
    with recording_server() as (drive, seen):
        external = emu.add_file(jpeg_bytes(seed=701), "from-drive.jpg", user=ALICE, is_external=True,
                                external_type="gdrive", mode="external", url_private=f"{drive}/d.jpg",
                                url_private_download=f"{drive}/d.jpg")
        posted = post_photo(emu, bot, external)
        reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], containing="from-drive.jpg", timeout=15)
        assert seen == []

    assert "I cannot search external files" in reply.text
    assert emu.downloads(external["id"]) == [] and emu.uploads() == []


# ---- user text in mrkdwn ------------------------------------------------------------------------------

def everything_said(emu) -> list[str]:
    return ([m.visible_text for m in emu.messages()] + [r.visible_text for r in emu.responses()]
            + [u.initial_comment or "" for u in emu.uploads()])


def test_file_names_queries_and_folders_cannot_ping_anyone(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=702), "<!channel> x.png", "image/jpeg", user=ALICE)
    fake = emu.add_file(b"not a picture", "<!here> y.png", "image/png", user=ALICE)
    answered = post_photo(emu, bot, photo)
    unreadable = post_photo(emu, bot, fake)
    # Slack escapes typed text; these arrive raw, as a gateway or a careless client may send them.
    searched = emu.send_slash_command(bot.events_url, text="<!here> party", channel_id="C0Q1")
    folder = emu.send_slash_command(bot.events_url, text='in:"<!channel>" lights', channel_id="C0Q2")
    option = emu.send_slash_command(bot.events_url, text="k=<!everyone> lights", channel_id="C0Q3")
    upload = emu.wait_for_upload(CHANNEL, thread_ts=answered["ts"], timeout=15)
    refused = emu.wait_for_message(CHANNEL, thread_ts=unreadable["ts"], containing="could not read", timeout=15)
    results = emu.wait_for_upload("C0Q1", timeout=15)
    empty_folder = emu.wait_for_response(folder.response_url, containing="No indexed images", timeout=15)

    assert upload.initial_comment.startswith("Archive images most similar to `&lt;!channel&gt; x.png`:")
    assert refused.text.startswith("I could not read `&lt;!here&gt; y.png` as a picture")
    assert "`&lt;!here&gt; party`" in results.initial_comment and "&lt;!here&gt;" in searched.body
    assert empty_folder.text == "No indexed images under the folder '&lt;!channel&gt;'."
    assert "`k=&lt;!everyone&gt;` must be a whole number" in option.body
    said = everything_said(emu) + [searched.body, folder.body, option.body]
    assert not any(token in text for text in said for token in ("<!channel>", "<!here>", "<!everyone>"))


# ---- Slack Connect, other teams and the channel allowlist -------------------------------------------

def test_a_photo_in_a_channel_shared_with_another_organisation_gets_a_sentence_not_images(bot, emu):
    emu.share_channel_externally(CHANNEL)
    photo = emu.add_file(jpeg_bytes(seed=703), "shared.jpg", user=ALICE)
    posted = post_photo(emu, bot, photo)

    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)

    assert reply.text == SHARED_CHANNEL
    assert emu.uploads() == [] and emu.downloads(photo["id"]) == []


def test_a_command_in_a_shared_channel_is_refused_privately_and_the_lookup_is_cached(bot, emu):
    emu.share_channel_externally("C0CONNECT")
    first = emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id="C0CONNECT")
    refusal = emu.wait_for_response(first.response_url, timeout=15)
    second = emu.send_slash_command(bot.events_url, text="more lights", user_id=ALICE, channel_id="C0CONNECT")
    again = emu.wait_for_response(second.response_url, timeout=15)
    emu.share_channel_externally("C0PENDING", pending=True)
    pending = emu.send_slash_command(bot.events_url, text="lights", user_id=ALICE, channel_id="C0PENDING")
    pending_refusal = emu.wait_for_response(pending.response_url, timeout=15)
    emu.send_slash_command(bot.events_url, text="lights", channel_id="C0INTERNAL")
    emu.wait_for_upload("C0INTERNAL", timeout=15)

    assert refusal.ephemeral and refusal.user_id == ALICE and refusal.text == SHARED_CHANNEL
    assert again.text == SHARED_CHANNEL and pending_refusal.text == SHARED_CHANNEL
    assert [c.params["channel"] for c in emu.api_calls("conversations.info")] == [
        "C0CONNECT", "C0PENDING", "C0INTERNAL"], "one look-up per channel"
    assert [u.channel for u in emu.uploads()] == ["C0INTERNAL"]


def test_users_of_another_team_are_refused(bot, emu):
    photo = emu.add_file(jpeg_bytes(seed=704), "guest.jpg", user="U0GUEST")
    posted = post_photo(emu, bot, photo, user_team=PARTNER_TEAM)
    command = emu.send_slash_command(bot.events_url, text="red lights", user_id="U0GUEST", channel_id=CHANNEL,
                                     team_id=PARTNER_TEAM)

    reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)
    assert reply.text == OTHER_TEAM and command.body == OTHER_TEAM
    assert emu.uploads() == [] and emu.downloads(photo["id"]) == []


def test_allow_shared_channels_answers_there_as_anywhere(indexed, emu):
    emu.share_channel_externally(CHANNEL)
    with serve_bot(with_settings(indexed, allow_shared_channels=True)) as running:
        posted = post_photo(emu, running, emu.add_file(jpeg_bytes(seed=705), "ok.jpg", user=ALICE))
        emu.send_slash_command(running.events_url, text="red lights", channel_id=CHANNEL)
        in_thread = emu.wait_for_upload(CHANNEL, thread_ts=posted["ts"], timeout=15)
        emu.wait_for(lambda: len(emu.uploads(CHANNEL)) == 2, timeout=15, what="the command's answer")

    assert len(in_thread.files) == 5
    assert emu.api_calls("conversations.info") == []


def test_with_a_channel_allowlist_the_bot_answers_only_there(indexed, emu):
    with serve_bot(with_settings(indexed, channels=("C0ENABLED",))) as running:
        elsewhere = emu.send_slash_command(running.events_url, text="red lights", channel_id=CHANNEL)
        posted = post_photo(emu, running, emu.add_file(jpeg_bytes(seed=706), "p.jpg", user=ALICE))
        reply = emu.wait_for_message(CHANNEL, thread_ts=posted["ts"], timeout=15)
        emu.send_slash_command(running.events_url, text="red lights", channel_id="C0ENABLED")
        enabled = emu.wait_for_upload("C0ENABLED", timeout=15)

    assert elsewhere.body == NOT_ENABLED and reply.text == NOT_ENABLED
    assert len(enabled.files) == 5 and [u.channel for u in emu.uploads()] == ["C0ENABLED"]


def test_without_the_scope_to_check_a_channel_the_bot_refuses_rather_than_guesses(bot, emu):
    emu.revoke_scope("channels:read")
    ack = emu.send_slash_command(bot.events_url, text="red lights", user_id=ALICE, channel_id=CHANNEL)

    refusal = emu.wait_for_response(ack.response_url, timeout=15)

    assert refusal.ephemeral and refusal.text == CANNOT_CHECK_SCOPE
    assert emu.uploads() == []

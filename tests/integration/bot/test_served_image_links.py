"""Signed image links (HTTP mode with FINDIMAGE_PUBLIC_BASE_URL) as the internet may use them: expired,
tampered, malformed, pointing at files that moved, changed or left the archive, and fetched in bursts."""
from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from bot_support import CHANNEL, FakeClock, serve_bot, with_settings
from photos import save_photo

from bot.image_links import LINK_TTL_SECONDS
from bot.previews import Previews
from findimage.imaging import thumbnail_jpeg
from indexer.run import index_once

PUBLIC = "https://findimage.example.org"


def http_get(url: str, with_headers: bool = False):
    """(status, body), and the response headers too with `with_headers`."""
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            status, body, headers = answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as error:
        status, body, headers = error.code, error.read(), error.headers
    return (status, body, headers) if with_headers else (status, body)


@pytest.fixture
def link_settings(indexed):
    return with_settings(indexed, public_base_url=PUBLIC, url_signing_key="k" * 32)


@pytest.fixture
def linked(link_settings):
    """The bot serving image links, with a clock the test moves."""
    clock = FakeClock()
    with serve_bot(link_settings, link_clock=clock) as bot:
        bot.clock = clock
        yield bot


def links(emu, bot, text="k=10 photos", channel=CHANNEL) -> dict[str, str]:
    """archive path -> the bot's local URL of its image, from the image blocks of a command's answer."""
    ack = emu.send_slash_command(bot.events_url, text=text, channel_id=channel)
    reply = emu.wait_for_response(ack.response_url, containing="searched the archive", timeout=15)
    return {b["alt_text"]: b["image_url"].replace(PUBLIC, bot.base_url) for b in reply.blocks if b["type"] == "image"}


def test_a_link_works_until_it_expires_and_then_the_same_url_is_refused(linked, emu):
    url = next(iter(links(emu, linked).values()))
    assert linked.clock.now + LINK_TTL_SECONDS - 1 <= int(re.search(r"expires=(\d+)", url).group(1))
    expires = int(re.search(r"expires=(\d+)", url).group(1))

    before = http_get(url)
    linked.clock.now = expires - 1
    last_second = http_get(url)
    linked.clock.now = expires + 1
    after = http_get(url)

    assert (before[0], last_second[0]) == (200, 200)
    assert after == (403, b"This image link is invalid or expired.\n")


@pytest.mark.parametrize("mutate", [
    lambda u: re.sub(r"expires=\d+&", "", u),  # missing
    lambda u: re.sub(r"&sig=[0-9a-f]+", "", u),
    lambda u: re.sub(r"&v=[0-9a-f]+", "", u),
    lambda u: u.split("?")[0],
    lambda u: re.sub(r"expires=\d+", "expires=soon", u),  # not a number
    lambda u: re.sub(r"expires=\d+", "expires=" + "9" * 5000, u),  # more digits than int() takes
    lambda u: re.sub(r"expires=\d+", "expires=-1", u),
    lambda u: re.sub(r"expires=\d+", "expires=%D9%A1%D9%A2%D9%A3", u),  # Arabic-Indic digits
    lambda u: re.sub(r"sig=[0-9a-f]+", "sig=" + "z" * 32, u),  # not hex
    lambda u: re.sub(r"sig=[0-9a-f]+", "sig=%C3%A9" * 16, u),  # non-ASCII
    lambda u: re.sub(r"sig=[0-9a-f]+", "sig=" + "a" * 33, u),
    lambda u: u + "&sig=" + "0" * 32,  # repeated
    lambda u: u + "&expires=1",
    lambda u: u + "&extra=1",
    lambda u: u.replace("?", "?junk&"),
    lambda u: re.sub(r"/images/[0-9a-f]+\.jpg", "/images/%E2%98%83.jpg", u),  # unicode image id
    lambda u: re.sub(r"/images/[0-9a-f]+\.jpg", "/images/..%2F..%2Fetc%2Fpasswd.jpg", u),
    lambda u: re.sub(r"\.jpg\?", "?", u),
])
def test_malformed_links_are_refused_with_400_never_a_server_error(linked, emu, mutate):
    url = next(iter(links(emu, linked).values()))

    status, body = http_get(mutate(url))

    assert (status, body) == (400, b"This image link is malformed.\n")


def test_a_wrong_signature_or_content_tag_is_refused(linked, emu):
    url = next(iter(links(emu, linked).values()))
    other_tag = re.sub(r"v=([0-9a-f])", lambda m: "v=" + ("1" if m.group(1) == "0" else "0"), url)
    other_image = re.sub(r"/images/[0-9a-f]+", "/images/" + "ab" * 12, url)

    assert http_get(other_tag)[0] == 403, "the content tag is signed"
    assert http_get(other_image)[0] == 403, "so is the image id"


def test_a_match_deleted_from_the_archive_gets_404(linked, link_settings, emu):
    by_path = links(emu, linked)
    first, second = list(by_path)[:2]
    (link_settings.archive / first).unlink()
    before_indexing = http_get(by_path[first])
    (link_settings.archive / second).unlink()
    index_once(link_settings, progress=False)

    assert before_indexing == (404, b"This image is no longer in the archive.\n")
    assert http_get(by_path[second]) == (404, b"This image is no longer in the archive.\n")


def test_a_replaced_files_old_link_stops_working_and_its_new_link_shows_the_new_picture(linked, link_settings, emu):
    by_path = links(emu, linked)
    path = next(iter(by_path))
    old_preview = http_get(by_path[path])[1]
    save_photo(link_settings.archive / path, seed=999)  # same name, other picture
    os.utime(link_settings.archive / path, (1, 1))  # an mtime the index cannot already have

    changed_not_indexed = http_get(by_path[path])
    index_once(link_settings, progress=False)
    reindexed = http_get(by_path[path])
    new = http_get(links(emu, linked, channel="C0AGAIN")[path])

    assert changed_not_indexed[0] == 404, "bytes that no longer match the index are not shown"
    assert reindexed == (404, b"This image has been replaced since the link was made.\n")
    assert new[0] == 200 and new[1] != old_preview
    assert new[1] == thumbnail_jpeg((link_settings.archive / path).read_bytes())


def test_a_document_whose_path_resolves_outside_the_archive_gets_404(linked, link_settings, emu, tmp_path):
    by_path = links(emu, linked)
    nature = [p for p in by_path if p.startswith("nature/")]
    outside = tmp_path / "outside-nature"
    shutil.move(str(link_settings.archive / "nature"), outside)  # keeps every file's size and mtime
    (link_settings.archive / "nature").symlink_to(outside, target_is_directory=True)

    answers = [http_get(by_path[p]) for p in nature]

    assert nature and all(a == (404, b"This image is no longer in the archive.\n") for a in answers)
    assert http_get(by_path[next(p for p in by_path if p.startswith("events/"))])[0] == 200


class CountingRender:
    """The real preview renderer, counting calls and optionally holding them until released."""

    def __init__(self, hold: bool = False):
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, data):
        with self._lock:
            self.calls += 1
        self.entered.release()
        assert self.release.wait(60), "the test released the renders"
        return thumbnail_jpeg(data)


def test_previews_are_rendered_once_per_content_hash(link_settings, emu):
    render = CountingRender()
    with serve_bot(link_settings, previews=Previews(render)) as bot:
        first = links(emu, bot)
        again = links(emu, bot, channel="C0AGAIN")  # new links (other expiry) to the same images
        answers = [http_get(u) for u in [*first.values(), *first.values(), *again.values()]]

    assert all(status == 200 for status, _ in answers)
    assert render.calls == len(first) == 7


def test_renders_run_two_at_a_time_and_a_third_is_refused_at_once_with_503_and_retry_after(link_settings, emu):
    render = CountingRender(hold=True)
    with serve_bot(link_settings, previews=Previews(render, concurrent=2)) as bot:
        a, b, c = list(links(emu, bot).values())[:3]
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(http_get, a), pool.submit(http_get, b)]
            assert render.entered.acquire(timeout=20) and render.entered.acquire(timeout=20)
            # Both slots are held until the test lets go: answers that came back did not wait for one.
            busy = [http_get(c, with_headers=True), http_get(a, with_headers=True)]
            commands_still_answered = emu.send_slash_command(bot.events_url, text="still acked?", channel_id="C0X")
            render.release.set()
            results = [f.result() for f in held]
        later = http_get(c)

    refused = (503, b"Too many images at once; try again shortly.\n")
    assert [(status, body) for status, body, _ in busy] == [refused, refused], "also the image being rendered"
    assert all(headers["Retry-After"] == "2" for _, _, headers in busy)
    assert commands_still_answered.status == 200
    assert [status for status, _ in results] == [200, 200] and later[0] == 200
    assert render.calls == 3, "a refused request renders nothing"


def test_an_unexpected_render_failure_is_a_500_logged_by_path_never_with_the_signature(link_settings, emu, caplog):
    def broken_render(path):
        raise RuntimeError("the decoder fell over")

    caplog.set_level(logging.INFO)
    with serve_bot(link_settings, previews=Previews(broken_render)) as bot:
        url = next(iter(links(emu, bot).values()))
        answer = http_get(url)

    assert answer == (500, b"Something went wrong with this image.\n")
    path = url.split("?")[0].removeprefix(bot.base_url)
    assert f"image link {path} failed" in caplog.text and "the decoder fell over" in caplog.text
    assert "sig=" not in caplog.text and re.search(r"sig=([0-9a-f]+)", url).group(1) not in caplog.text

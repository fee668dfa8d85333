"""Signed image links (bot.image_links) on their own: what a valid link is, and every way one is refused.

Fast unit tests (no models, no server); the served links are tested end to end in test_bot_image_links.
"""
from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from bot.image_links import (
    LINK_TTL_SECONDS,
    PATH_PREFIX,
    ImageLinks,
    LinkRequest,
    MalformedLink,
    content_tag,
    parse_link,
    signing_key,
)

KEY = b"k" * 32
SHA = "ABCDEF0123456789" + "f" * 48
NOW = 1_700_000_000


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def expected_signature(key: bytes, image_id: str, tag: str, expires: int) -> str:
    return hmac.new(key, f"{image_id}:{tag}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.query


def test_the_content_tag_is_the_first_16_hex_digits_of_the_hash_in_lower_case():
    assert content_tag(SHA) == "abcdef0123456789"
    assert content_tag("") == "" and content_tag(None) == ""


def test_a_link_is_the_image_path_with_expiry_tag_and_signature_over_all_three():
    clock = Clock()
    links = ImageLinks("https://findimage.example.org/", KEY, clock=clock)
    url = links.url_for("0a1b", SHA)

    expires = NOW + LINK_TTL_SECONDS
    sig = expected_signature(KEY, "0a1b", "abcdef0123456789", expires)
    assert url == f"https://findimage.example.org/images/0a1b.jpg?expires={expires}&v=abcdef0123456789&sig={sig}"
    assert LINK_TTL_SECONDS == 7 * 24 * 3600 and links.ttl_seconds == LINK_TTL_SECONDS
    assert parse_link(*split(url)) == LinkRequest("0a1b", expires, "abcdef0123456789", sig)


def test_a_link_is_valid_until_its_expiry_second_and_not_after():
    clock = Clock()
    links = ImageLinks("https://x.example", KEY, ttl_seconds=60, clock=clock)
    link = parse_link(*split(links.url_for("ff", SHA)))
    assert link.expires == NOW + 60

    clock.now = NOW + 60
    assert links.is_valid(link), "valid through the expiry second"
    clock.now = NOW + 60.5
    assert not links.is_valid(link)


@pytest.mark.parametrize("change", [
    {"image_id": "fe"}, {"tag": "0" * 16}, {"expires": NOW + 61}, {"signature": "0" * 32},
])
def test_a_link_with_any_part_changed_is_refused(change):
    links = ImageLinks("https://x.example", KEY, ttl_seconds=60, clock=Clock())
    link = parse_link(*split(links.url_for("ff", SHA)))
    assert links.is_valid(link)

    changed = LinkRequest(**{**link.__dict__, **change})
    assert not links.is_valid(changed)


def test_a_link_made_with_another_key_is_refused():
    mine = ImageLinks("https://x.example", KEY, clock=Clock())
    theirs = ImageLinks("https://x.example", b"another key", clock=Clock())
    assert not mine.is_valid(parse_link(*split(theirs.url_for("ff", SHA))))


GOOD_QUERY = f"expires={NOW}&v={'a' * 16}&sig={'b' * 32}"


def test_the_largest_well_formed_parts_are_accepted():
    path = PATH_PREFIX + "f" * 64 + ".jpg"
    query = f"expires={'9' * 12}&v={'0' * 16}&sig={'9' * 32}"
    assert parse_link(path, query) == LinkRequest("f" * 64, 999_999_999_999, "0" * 16, "9" * 32)
    # the parameters may come in any order
    assert parse_link("/images/1.jpg", f"sig={'b' * 32}&v={'a' * 16}&expires=5") == LinkRequest(
        "1", 5, "a" * 16, "b" * 32)


@pytest.mark.parametrize("path", [
    "/images/ff.png", "/images/ff.jpg.jpg", "/images/.jpg", "/images/FF.jpg", "/images/f g.jpg",
    "/images/" + "f" * 65 + ".jpg", "/images/../ff.jpg", "/images/ff.jpeg", "/images/ffjpg",
])
def test_paths_the_bot_never_makes_are_malformed(path):
    with pytest.raises(MalformedLink) as refused:
        parse_link(path, GOOD_QUERY)
    assert str(refused.value) == "unknown image path"  # what the log says about the request


@pytest.mark.parametrize("query, problem", [
    ("", "expires missing"),
    ("expires", "unreadable"),
    (GOOD_QUERY + "&extra=1", "unreadable"),  # more fields than a link has
    (f"v={'a' * 16}&sig={'b' * 32}", "expires missing"),
    (f"expires=1&expires=2&v={'a' * 16}", "expires missing, repeated"),
    (f"expires=&v={'a' * 16}&sig={'b' * 32}", "expires"),
    (f"expires=1e9&v={'a' * 16}&sig={'b' * 32}", "expires"),
    (f"expires=-1&v={'a' * 16}&sig={'b' * 32}", "expires"),
    (f"expires={'1' * 13}&v={'a' * 16}&sig={'b' * 32}", "expires"),
    (f"expires=%D9%A1&v={'a' * 16}&sig={'b' * 32}", "expires"),  # an Arabic-Indic digit is a digit to int()
    (f"expires=1&v={'a' * 15}&sig={'b' * 32}", "v missing"),
    (f"expires=1&v={'a' * 17}&sig={'b' * 32}", "v missing"),
    (f"expires=1&v={'A' * 16}&sig={'b' * 32}", "v missing"),
    (f"expires=1&v={'a' * 16}&sig={'b' * 31}", "sig missing"),
    (f"expires=1&v={'a' * 16}&sig={'b' * 33}", "sig missing"),
    (f"expires=1&v={'a' * 16}&sig={'g' * 32}", "sig missing"),
    (f"expires=1&v={'a' * 16}&other={'b' * 32}", "sig missing"),
])
def test_queries_the_bot_never_makes_are_malformed(query, problem):
    with pytest.raises(MalformedLink) as refused:
        parse_link("/images/ff.jpg", query)
    assert str(refused.value).startswith(problem)
    if problem == "unreadable":
        assert str(refused.value) == "unreadable query string"
    else:
        assert str(refused.value).endswith(" missing, repeated or malformed")


def settings(**values):
    return SimpleNamespace(**{"url_signing_key": "", "slack_signing_secret": "", "public_base_url": "", **values})


def test_the_signing_key_is_the_configured_one_else_derived_from_the_slack_secret_else_none():
    assert signing_key(settings(url_signing_key="mine", slack_signing_secret="slack")) == b"mine"
    derived = signing_key(settings(slack_signing_secret="slack"))
    assert derived == hmac.new(b"slack", b"findimage image links", hashlib.sha256).digest()
    assert b"slack" not in derived
    assert signing_key(settings()) is None


def test_links_exist_only_with_a_public_base_url_and_a_key():
    clock = Clock()
    links = ImageLinks.from_settings(settings(public_base_url="https://x.example/", url_signing_key="k"), clock)
    assert links.base_url == "https://x.example" and links.url_for("ff", SHA).startswith(
        f"https://x.example/images/ff.jpg?expires={NOW + LINK_TTL_SECONDS}&")
    assert links.is_valid(parse_link(*split(links.url_for("ff", SHA))))
    derived = ImageLinks.from_settings(settings(public_base_url="https://x.example", slack_signing_secret="s"))
    assert derived is not None and derived._key == signing_key(settings(slack_signing_secret="s"))
    assert ImageLinks("https://x.example/X/", KEY).base_url == "https://x.example/X", "only slashes are stripped"
    assert ImageLinks.from_settings(settings(url_signing_key="k")) is None
    assert ImageLinks.from_settings(settings(public_base_url="https://x.example")) is None

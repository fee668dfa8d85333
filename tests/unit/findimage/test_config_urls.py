"""URLs with credentials in the settings: shown without them whatever the password holds, checked before any
client parses them, and the queue's TLS settings."""
from __future__ import annotations

import pytest

from findimage.config import ConfigError, load_settings, public_url

# (URL as an admin may write it, what may be shown, the secret that must never be)
NASTY = [
    ("redis://:pa/ss?x#y@host:6379/0", "redis://host:6379/0", "pa/ss?x#y"),
    ("https://elastic:p@ss/w?rd#1@es:9200", "https://es:9200", "p@ss/w?rd#1"),
    ("https://elastic:p@ss@es:9200/prefix", "https://es:9200/prefix", "p@ss"),
    ("redis://:pa%2Fss%3Fx%23y%40@host:6379/0", "redis://host:6379/0", "pa%2Fss"),
    ("rediss://user:s3cret@redis.internal:6380/2", "rediss://redis.internal:6380/2", "s3cret"),
    ("redis://:a://b@host:6379", "redis://host:6379", "a://b"),
    ("redis://:#only-a-hash@host/0", "redis://host/0", "only-a-hash"),
    ("redis://:?q@host/0", "redis://host/0", "?q"),
    ("redis://host:6379/0?password=s3cret", "redis://host:6379/0", "s3cret"),
    ("https://es:9200/?api_key=s3cret#frag", "https://es:9200/", "s3cret"),
    ("redis:/:s3cret://x@host", "host", "s3cret"),  # no scheme that parses: only what follows the last @
    (":s3cret/x@host:6379", "host:6379", "s3cret"),
    ("https://es.example.com:9200", "https://es.example.com:9200", None),
    ("http://[::1]:9200/", "http://[::1]:9200/", None),
]


@pytest.mark.parametrize("url, shown, secret", NASTY)
def test_public_url_cuts_the_userinfo_whatever_the_password_holds(url, shown, secret):
    assert public_url(url) == shown
    if secret:
        assert secret not in public_url(url)


def test_public_url_keeps_nothing_to_show_as_it_is():
    assert public_url(None) is None and public_url("") == ""


def settings_problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, env_file=None)
    return caught.value.problems


UNENCODED = [("FINDIMAGE_QUEUE_URL", "redis://:Zq9/ss?x#y@host:6379/0", "Zq9"),
             ("FINDIMAGE_QUEUE_URL", "rediss://:Zq9/y@127.0.0.1:6380/0", "Zq9"),
             ("FINDIMAGE_QUEUE_URL", "redis://:Zq9@[::1/0", "Zq9"),
             ("FINDIMAGE_QUEUE_URL", "redis://:Zq9", "Zq9"),  # no host: the password reads as a port
             ("ELASTICSEARCH_URL", "https://elastic:Zq9@ss/w?rd#1@es:9200", "Zq9"),
             ("ELASTICSEARCH_URL", "https://elastic:Zq9#ss@es:9200", "Zq9")]


@pytest.mark.parametrize("name, url, secret", UNENCODED)
def test_a_url_whose_password_is_not_encoded_is_refused_without_showing_it(name, url, secret):
    problems = settings_problems(**{name: url})
    assert problems == [f"{name} cannot be read as a URL: write it as {'https' if 'ELASTIC' in name else 'redis'}"
                        "://[user:password@]host:port, with any / ? # @ or % in the password percent-encoded "
                        "(e.g. / as %2F, @ as %40)."]
    assert secret not in problems[0]


@pytest.mark.parametrize("name, url", [("FINDIMAGE_QUEUE_URL", "http://:Zq9/ss@host:6379/0"),
                                       ("ELASTICSEARCH_URL", "es://elastic:Zq9/ss?x@es:9200")])
def test_a_url_of_the_wrong_kind_is_named_without_its_password(name, url):
    [problem] = settings_problems(**{name: url})
    assert "must start with" in problem and "Zq9" not in problem


def test_percent_encoded_passwords_pass_and_reach_the_clients_decoded():
    settings = load_settings({"FINDIMAGE_QUEUE_URL": "redis://:pa%2Fss%3Fx%23y%40@127.0.0.1:6379/0",
                              "ELASTICSEARCH_URL": "https://elastic:p%40ss%2Fw@es:9200"}, env_file=None)
    assert settings.queue_url == "redis://:pa%2Fss%3Fx%23y%40@127.0.0.1:6379/0"
    from redis.connection import parse_url

    assert parse_url(settings.queue_url)["password"] == "pa/ss?x#y@"
    assert "pa%2F" not in repr(settings) and "p%40ss" not in repr(settings)


def test_the_queue_url_carries_no_password_or_tls_options_of_its_own():
    problems = settings_problems(FINDIMAGE_QUEUE_URL="rediss://h:6379/0?password=s3cret&ssl_cert_reqs=none")
    assert problems == [
        "FINDIMAGE_QUEUE_URL='rediss://h:6379/0': put the password before the host (redis://:password@host:6379/0), "
        "not in ?password=.",
        "FINDIMAGE_QUEUE_URL='rediss://h:6379/0': set TLS with the FINDIMAGE_QUEUE_TLS_* settings, not with ssl "
        "options in the URL (Redis's certificate is always verified)."]


def test_queue_tls_files_must_exist_belong_together_and_need_rediss(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    problems = settings_problems(FINDIMAGE_QUEUE_URL="redis://127.0.0.1:6379/0", FINDIMAGE_QUEUE_TLS_CA_FILE=str(ca),
                                 FINDIMAGE_QUEUE_TLS_KEY_FILE=str(tmp_path / "missing.key"))
    assert problems == [
        f"FINDIMAGE_QUEUE_TLS_KEY_FILE={tmp_path / 'missing.key'} does not exist.",
        "FINDIMAGE_QUEUE_TLS_KEY_FILE needs FINDIMAGE_QUEUE_TLS_CERT_FILE (the certificate it belongs to).",
        "The FINDIMAGE_QUEUE_TLS_* settings need a rediss:// FINDIMAGE_QUEUE_URL (TLS)."]
    settings = load_settings({"FINDIMAGE_QUEUE_URL": "rediss://:pw@127.0.0.1:6380/0",
                              "FINDIMAGE_QUEUE_TLS_CA_FILE": str(ca)}, env_file=None)
    assert settings.queue_tls_ca_file == ca

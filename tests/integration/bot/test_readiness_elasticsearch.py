"""A bot whose Elasticsearch goes away stays alive (/healthz 200, the platform does not restart it) and says
it is not ready (/readyz 503, a router sends its work elsewhere); it is ready again by itself once
Elasticsearch is reachable again. The outage is a proxy between the bot and a real Elasticsearch."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from bot_support import FakeClock, serve_bot, with_settings
from es_support import es_only
from scraping import get
from tcp_proxy import TcpProxy

from findimage import __version__
from findimage.observability import READY_TTL_SECONDS

READY = (200, "Ready: 7 documents in the archive.\n")
STORE_DOWN = (503, "Not ready: the store is not answering.\n")
ALIVE = (200, {"status": "ok", "version": __version__, "queued": 0})


@pytest.fixture
def proxy(indexed):
    between = TcpProxy(urlsplit(indexed.elasticsearch_url).port)
    between.start()
    yield between
    between.stop()


@es_only
def test_readiness_follows_elasticsearch_away_and_back_while_the_bot_stays_alive(indexed, proxy):
    clock = FakeClock()
    settings = with_settings(indexed, elasticsearch_url=proxy.url, es_timeout_seconds=2.0)

    def readiness_becomes(bot, expected) -> tuple:
        deadline = time.monotonic() + 60
        while (answer := get(bot.base_url, "/readyz")) != expected and time.monotonic() < deadline:
            clock.advance(READY_TTL_SECONDS)  # the last probe is stale: the next check starts another
            time.sleep(0.2)
        return answer

    with serve_bot(settings, health_clock=clock) as bot:
        before = get(bot.base_url, "/readyz")
        proxy.stop()
        away = readiness_becomes(bot, STORE_DOWN)
        alive_while_away = get(bot.base_url, "/healthz")
        proxy.start()
        back = readiness_becomes(bot, READY)

    assert before == READY
    assert away == STORE_DOWN and str(proxy.port) not in away[1]
    assert alive_while_away == ALIVE
    assert back == READY

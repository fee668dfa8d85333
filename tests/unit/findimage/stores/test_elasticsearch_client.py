"""What the Elasticsearch client tells the server about itself, read off the wire (no Elasticsearch needed)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from elasticsearch import ApiError

from findimage import __version__
from findimage.config import load_settings
from findimage.stores.elasticsearch.client import make_client


def test_every_request_names_findimage_and_its_version_before_the_client_it_uses():
    agents: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            agents.append(self.headers.get("User-Agent", ""))
            self.send_response(404)  # not a cluster: the request is all this test wants
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = load_settings({"ELASTICSEARCH_URL": f"http://127.0.0.1:{server.server_port}"}, env_file=None)
        with pytest.raises(ApiError):
            make_client(settings).info()
    finally:
        server.shutdown()
        server.server_close()

    assert agents and all(agent.startswith(f"findimage/{__version__} elasticsearch-py/") for agent in agents), agents
    assert all("(Python/" in agent and "elastic-transport/" in agent for agent in agents), "the client's own part"

"""What a query costs on Elasticsearch, counted in requests to the real server: one search, with the
stored model checked once per index and again only when a rebuild swapped the index."""
from __future__ import annotations

import dataclasses
import logging
import shutil
import threading

import pytest
from es_support import es_only

from findimage.errors import ModelMismatch
from findimage.search import Searcher
from indexer.run import index_once

TRANSPORT = "elastic_transport.transport"  # logs one INFO line per HTTP request


@pytest.fixture
def requests_made(caplog):
    logging.getLogger(TRANSPORT).setLevel(logging.INFO)
    caplog.set_level(logging.INFO, logger=TRANSPORT)

    me = threading.get_ident()

    def since(mark: int) -> list[str]:
        # this test's own requests: a bot of an earlier test may still poll its store from a daemon thread
        return [r.getMessage() for r in caplog.records[mark:] if r.name == TRANSPORT and r.thread == me]

    yield lambda: len(caplog.records), since
    logging.getLogger(TRANSPORT).setLevel(logging.NOTSET)


@es_only
def test_a_text_query_is_one_search_request_until_a_rebuild_swaps_the_index(settings, archive, test_models,
                                                                             requests_made):
    mark, since = requests_made
    index_once(settings)
    searcher = Searcher(settings)
    searcher.check_model()
    searcher.by_text("a snowy mountain")  # first query: the index's models and dims are read once

    before = mark()
    searcher.check_model()  # as the bot does before every query
    result = searcher.by_text("stage with red lights", k=3)
    made = since(before)

    assert len(result.matches) == 3
    assert len(made) == 1 and made[0].startswith("POST ") and ("/_search" in made[0] or "/_msearch" in made[0]), made

    other_model = archive.parent / "other-model"
    shutil.copytree(test_models["image"], other_model)
    with open(other_model / "modules.json", "a") as f:
        f.write("\n")  # another model, as far as the index knows
    index_once(dataclasses.replace(settings, image_model=str(other_model)), full=True)

    with pytest.raises(ModelMismatch, match="findimage index --full"):
        searcher.by_text("stage with red lights")  # answered by the new index: its models are read again

"""What an operator's Prometheus sees of `findimage schedule`: its passes and what they did, the store's
size and unread text, and whether it can index now (the archive mounted, the store answering)."""
from __future__ import annotations

import sys
from pathlib import Path

from bot_support import BotProcess, free_port, process_env
from scraping import get, scrape_until, value, wait_for_answer

from findimage import __version__

SCHEDULE = [str(Path(sys.executable).parent / "findimage"), "schedule"]


def test_the_scheduler_serves_its_passes_store_and_readiness_on_the_metrics_port(archive, env, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    values = process_env(env, FINDIMAGE_METRICS_PORT=str(port), FINDIMAGE_METRICS_HOST="127.0.0.1",
                         FINDIMAGE_INDEX_INTERVAL_MINUTES="60", PYTHONUNBUFFERED="1")
    scheduler = BotProcess(SCHEDULE, values, cwd=tmp_path)
    moved = archive.with_name("archive-unmounted")
    try:
        scheduler.wait_for_line("pass done", timeout=180)
        samples = scrape_until(base, lambda s: value(s, "findimage_index_documents") == 7)
        alive = get(base, "/healthz")
        ready = wait_for_answer(base, "/readyz", (200, "Ready: 7 documents in the archive.\n"))
        archive.rename(moved)  # the share unmounted
        unmounted = wait_for_answer(base, "/readyz", (503, "Not ready: the archive folder is missing or cannot be "
                                                           "read (is it mounted?).\n"))
        alive_unmounted = get(base, "/healthz")
        moved.rename(archive)
        back = wait_for_answer(base, "/readyz", (200, "Ready: 7 documents in the archive.\n"))
    finally:
        if moved.exists():
            moved.rename(archive)
        status = scheduler.stop()

    assert value(samples, "findimage_index_passes_total", outcome="completed") == 1
    assert value(samples, "findimage_index_images_total", result="embedded") == 7
    assert value(samples, "findimage_index_last_pass_images", result="embedded") == 7
    assert value(samples, "findimage_index_last_pass_images", result="failed") == 0
    assert value(samples, "findimage_index_last_pass_images", result="removed") == 0
    assert value(samples, "findimage_index_last_pass_finished_timestamp_seconds") > 1.7e9
    assert value(samples, "findimage_index_last_pass_duration_seconds") > 0
    assert value(samples, "findimage_index_text_backlog") == 0, "FINDIMAGE_OCR=off: nothing waits to be read"
    assert alive == alive_unmounted == (200, {"status": "ok", "version": __version__})
    assert ready[0] == 200 and unmounted[0] == 503 and back[0] == 200
    assert str(archive) not in unmounted[1]
    assert status in (0, -15), scheduler.output


def test_the_text_backlog_counts_the_documents_whose_text_is_not_read_yet(archive, settings):
    from prometheus_client import REGISTRY

    from findimage.backends import open_store
    from indexer.metrics import record_store
    from indexer.run import index_once

    index_once(settings, progress=False)  # FINDIMAGE_OCR=off: no text read
    store = open_store(settings)
    try:
        record_store(store, ocr=True)
        waiting = REGISTRY.get_sample_value("findimage_index_text_backlog")
        record_store(store, ocr=False)
        switched_off = REGISTRY.get_sample_value("findimage_index_text_backlog")
    finally:
        store.close()

    assert (waiting, switched_off) == (7, 0)

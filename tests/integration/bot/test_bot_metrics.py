"""What an operator's Prometheus sees of the bot: /metrics in Prometheus's text format beside /slack/events,
its counters moving with each request, the same numbers whichever of gunicorn's workers answers the scrape,
and never a channel, a user, a query or a secret among the label values."""
from __future__ import annotations

import os
import signal
import sys

from bot_support import ALICE, CHANNEL, BotProcess, free_port, process_env, slack_env
from scraping import get, scrape, scrape_until, value, wait_for_answer

from bot.metrics import KINDS, OUTCOMES, SLACK_ERRORS
from findimage import __version__
from findimage.stores.base import LIFECYCLE, REMEMBER

REQUESTS = "findimage_bot_requests_total"
LATENCY = "findimage_bot_answer_seconds_count"


def test_a_command_moves_the_request_counter_and_the_latency_histogram_and_the_queue_empties(bot, emu):
    before = scrape(bot.base_url)
    emu.send_slash_command(bot.events_url, text="stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=20)
    emu.send_slash_command(bot.events_url, text="after:2024-13 lights", user_id=ALICE, channel_id=CHANNEL)
    after = scrape_until(bot.base_url, lambda s: value(s, REQUESTS, kind="command", outcome="answered")
                         > value(before, REQUESTS, kind="command", outcome="answered"))

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(REQUESTS, kind="command", outcome="answered") == 1
    assert moved(REQUESTS, kind="command", outcome="invalid") == 1, "the date that does not exist"
    assert moved(LATENCY, kind="command") == 1, "answers are timed; refusals at the ack are not"
    assert moved("findimage_bot_answer_seconds_sum", kind="command") > 0
    assert value(after, "findimage_bot_answers_queued") == 0


def test_slack_rate_limits_are_counted_as_the_client_waits_them_out(bot, emu):
    before = scrape(bot.base_url)
    emu.rate_limit("files.getUploadURLExternal", times=1, retry_after=1)
    emu.send_slash_command(bot.events_url, text="stage with red lights", user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=30)
    after = scrape(bot.base_url)

    assert len(emu.rate_limited_calls("files.getUploadURLExternal")) == 1
    assert value(after, "findimage_slack_api_errors_total", reason="rate_limited") - \
        value(before, "findimage_slack_api_errors_total", reason="rate_limited") == 1


# Every label of every findimage series, and the values each may take.
FIXED = {"kind": set(KINDS), "outcome": set(OUTCOMES) | {"completed", "refused", "failed", "skipped", "done"},
         "reason": set(SLACK_ERRORS), "lane": {REMEMBER, LIFECYCLE}, "result": {"embedded", "failed", "removed"}}


def test_label_values_come_only_from_fixed_sets_never_from_a_request(bot, emu):
    secretive = "xoxb-looks-like-a-token /srv/archive/private"
    emu.send_slash_command(bot.events_url, text=secretive, user_id=ALICE, channel_id=CHANNEL)
    emu.wait_for_upload(CHANNEL, timeout=20)
    emu.send_slash_command(bot.events_url, text=f"after:{secretive}", user_id=ALICE, channel_id=CHANNEL)
    samples = scrape_until(bot.base_url, lambda s: value(s, REQUESTS, kind="command", outcome="invalid") >= 1)

    ours = {(name, labels) for name, labels in samples if name.startswith("findimage_")}
    labels = {(label, v) for _, pairs in ours for label, v in pairs if label != "le"}
    assert ours and labels, "the bot's series are there"
    assert {label for label, _ in labels} <= set(FIXED), labels
    assert all(v in FIXED[label] for label, v in labels), labels
    shown = repr(sorted(samples, key=repr))
    for leaked in (CHANNEL, ALICE, "xoxb-", "/srv/archive", emu.bot_token, emu.signing_secret):
        assert leaked not in shown


# ---- HTTP mode as deployed: gunicorn's worker processes ----------------------------------------------

# `findimage bot` as it starts (its checks of Slack included), with two workers instead of one.
TWO_WORKERS = """
import sys
from findimage.config import load_settings
from bot import server
server.GUNICORN_OPTIONS["workers"] = 2
sys.exit(server.run(load_settings()))
"""


def test_with_two_gunicorn_workers_every_scrape_adds_up_both_and_a_dead_worker_loses_no_count(indexed, env, emu,
                                                                                                tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    temporary = tmp_path / "tmp"  # where the web server makes its metrics folder
    temporary.mkdir()
    values = process_env({**env, **slack_env(emu)}, PORT=str(port), PYTHONUNBUFFERED="1", TMPDIR=str(temporary))
    web = BotProcess([sys.executable, "-c", TWO_WORKERS], values, cwd=tmp_path)
    commands = 6
    try:
        # Both workers ready, not only the first: commands sent while one still loads its models all go to
        # the other, and the first would have written no counter.
        emu.wait_for(lambda: web.output.count("findimage bot ready over HTTP") == 2, 120, "both workers ready")
        wait_for_answer(base, "/readyz", (200, "Ready: 7 documents in the archive.\n"))
        # Each command is a connection of its own: gunicorn's workers take them as they come.
        for n in range(commands):
            emu.send_slash_command(f"{base}/slack/events", text=f"stage {n}", user_id=ALICE, channel_id=CHANNEL)
        emu.wait_for(lambda: len(emu.uploads(CHANNEL)) == commands, 60, "every answer")
        answered = lambda s: value(s, REQUESTS, kind="command", outcome="answered")  # noqa: E731
        scrape_until(base, lambda s: answered(s) == commands)
        scrapes = [scrape(base) for _ in range(8)]  # each may be answered by either worker
        workers = [int(line.rsplit(" ", 1)[1]) for line in web.lines if "Booting worker with pid" in line]
        (folder,) = temporary.glob("findimage-metrics-*")
        written = sorted(path.name for path in folder.iterdir())
        os.kill(workers[0], signal.SIGKILL)  # gunicorn starts another; the dead one's counts stay
        # Ready, not only booted: a worker still loading its models when the server is stopped holds up the stop.
        emu.wait_for(lambda: web.output.count("findimage bot ready over HTTP") == 3, 120, "a new worker ready")
        after_death = [scrape(base) for _ in range(4)]
        left = sorted(path.name for path in folder.iterdir())
    finally:
        status = web.stop()

    assert len(workers) == 2, web.output
    assert {f"counter_{pid}.db" for pid in workers} | {f"gauge_livesum_{pid}.db" for pid in workers} <= set(written), \
        "each worker writes its metrics into the shared folder"
    assert f"counter_{workers[0]}.db" in left and f"gauge_livesum_{workers[0]}.db" not in left, \
        "the dead worker's counters stay, its live gauge is gone"
    assert [answered(s) for s in scrapes] == [commands] * 8, "the same numbers from either worker"
    assert [value(s, LATENCY, kind="command") for s in scrapes] == [commands] * 8
    assert [answered(s) for s in after_death] == [commands] * 4, "a dead worker's counts are kept"
    assert [value(s, "findimage_bot_answers_queued") for s in after_death] == [0] * 4
    assert status == 0 and not folder.exists(), web.output
    assert "prometheus_client was imported before" not in web.output, "the folder is set before anything imports it"


# ---- Socket Mode: a monitoring server of its own -----------------------------------------------------

def test_in_socket_mode_the_metrics_port_serves_health_readiness_and_counters(indexed, env, emu, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    values = process_env({**env, **slack_env(emu)}, SLACK_APP_TOKEN=emu.app_token, SLACK_SIGNING_SECRET="",
                         FINDIMAGE_METRICS_PORT=str(port), FINDIMAGE_METRICS_HOST="127.0.0.1",
                         PYTHONUNBUFFERED="1")
    bot = BotProcess([sys.executable, "-m", "bot"], values, cwd=tmp_path)
    try:
        alive = wait_for_answer(base, "/healthz", (200, {"status": "ok", "version": __version__, "queued": 0}))
        bot.wait_for_line("connected over Socket Mode")
        ready = wait_for_answer(base, "/readyz", (200, "Ready: 7 documents in the archive.\n"))
        emu.socket_slash_command("stage with red lights", user_id=ALICE, channel_id=CHANNEL)
        emu.wait_for_upload(CHANNEL, timeout=30)
        samples = scrape_until(base, lambda s: value(s, REQUESTS, kind="command", outcome="answered") == 1)
        missing = get(base, "/slack/events")
    finally:
        status = bot.stop()

    assert alive[0] == 200 and ready[0] == 200
    assert value(samples, LATENCY, kind="command") == 1
    assert value(samples, "findimage_bot_remembering_backlog", lane=REMEMBER) == 0
    assert missing[0] == 404
    assert status == 0, bot.output

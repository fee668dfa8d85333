"""Shared pieces of the bot tests: the Slack emulator, an indexed archive, and the bot served for real.

Test modules import the fixtures they use from here (`from bot_support import ...`).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from photos import jpeg_bytes
from PIL import Image
from slack_emulator import SlackEmulator

from bot.app import WebParts, build_wsgi_app
from bot.work import WorkPool
from findimage.backends import open_store
from findimage.search import Searcher

CHANNEL = "C0PHOTOS"
ALICE = "U0ALICE"
BOB = "U0BOB"


def slack_env(emu: SlackEmulator) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
        # Random-weight test models score text against images around 0.5; keep the default presentation
        # (not "uncertain") unless a test asks for it.
        "FINDIMAGE_WEAK_SCORE": "0.3",
    }


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64  # 20+ commands arrive at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _CountingInput:
    """wsgi.input that counts the body bytes the app reads."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0

    def _counted(self, data: bytes) -> bytes:
        self.count += len(data)
        return data

    def read(self, *args):
        return self._counted(self._stream.read(*args))

    def readline(self, *args):
        return self._counted(self._stream.readline(*args))

    def readlines(self, *args):
        return [self._counted(line) for line in self._stream.readlines(*args)]

    def __iter__(self):
        return (self._counted(line) for line in self._stream)


@dataclass
class RunningBot:
    base_url: str
    wsgi: object
    body_bytes_read: list = dataclasses.field(default_factory=list)  # (path, bytes) per finished request

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/slack/events"

    @property
    def searcher(self) -> Searcher:
        return self.wsgi.routes.slack.app.services.searcher

    @property
    def work(self):
        """The bot's answer pool (a HeldWork under `held_bot`)."""
        return self.wsgi.work


@contextmanager
def serve_bot(settings, searcher: Searcher | None = None, **options):
    """The bot's real WSGI app (bot.web) on a real threaded HTTP server on a free port.

    `options` are the parts of the app a test gives (bot.app.WebParts: clocks, previews, work, seen). The
    server counts the body bytes each request made the app read (`RunningBot.body_bytes_read`).
    """
    wsgi = build_wsgi_app(settings, WebParts(searcher, **options))
    read: list = []

    def counting(environ, start_response):
        meter = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = meter
        try:
            return wsgi(environ, start_response)
        finally:
            read.append((environ.get("PATH_INFO"), meter.count))

    server = make_server("127.0.0.1", 0, counting, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    try:
        with serving(server) as url:
            yield RunningBot(url, wsgi, read)
    finally:
        if wsgi.memory is not None:  # as the process's end would: its workers stop polling the store
            wsgi.memory.stop()


@functools.lru_cache(maxsize=4)
def reference_model(path: str):
    """The model at `path` loaded by sentence-transformers itself, not through findimage's embedders."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def stored_vectors(settings) -> tuple[list[str], np.ndarray]:
    """Every indexed file's path and stored image vector (unit length), read straight from the store."""
    store = open_store(settings)
    try:
        docs = [store.get(state.image_id) for state in store.file_states().values()]
    finally:
        store.close()
    vectors = np.stack([d.image_embedding for d in docs]).astype(np.float64)
    return [d.relative_path for d in docs], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_ranking(settings, query_vector, k: int, folder: str = "") -> list[tuple[str, float]]:
    """The k archive paths nearest to `query_vector` by cosine over every stored vector, each with its
    score on the scale findimage shows (Elasticsearch's for cosine: (1 + cos) / 2)."""
    paths, vectors = stored_vectors(settings)
    query = np.asarray(query_vector, dtype=np.float64)
    scores = vectors @ (query / np.linalg.norm(query))
    order = [i for i in np.argsort(-scores, kind="stable") if paths[i].startswith(folder)]
    return [(paths[i], (1.0 + float(scores[i])) / 2.0) for i in order[:k]]


def reference_text_ranking(settings, text: str, k: int, folder: str = "") -> list[tuple[str, float]]:
    """What a text query should answer, computed without findimage's search: the text model through
    sentence-transformers, then brute-force cosine. (CLIP alone: use queries with no archive-path words.)"""
    vector = reference_model(str(settings.text_model)).encode([text])[0]
    return brute_force_ranking(settings, vector, k, folder)


def reference_image_ranking(settings, data: bytes, k: int) -> list[tuple[str, float]]:
    """What a posted picture should answer: the image model through sentence-transformers, brute-force cosine."""
    with Image.open(io.BytesIO(data)) as image:
        vector = reference_model(str(settings.image_model)).encode([image.convert("RGB")])[0]
    return brute_force_ranking(settings, vector, k)


def assert_same_ranking(shown: list[tuple[str, float]], expected: list[tuple[str, float]], shown_decimals: int = 3):
    """Same paths in the same order, and each shown score the reference cosine as rounded for display."""
    assert [p for p, _ in shown] == [p for p, _ in expected], (shown, expected)
    tolerance = 0.5 * 10 ** -shown_decimals + 1e-4
    assert all(
        abs(got - want) <= tolerance for (_, got), (_, want) in zip(shown, expected, strict=True)
    ), (shown, expected)


def with_settings(settings, **changes):
    return dataclasses.replace(settings, **changes)


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def png_bytes(color: str = "red", size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class BotProcess:
    """The bot as a separate process (as deployed), with its log lines readable while it runs.

    `lines` holds what it writes to stdout and stderr; with `stderr_apart`, `stdout_lines` and
    `stderr_lines` hold each alone (stderr: what a log collector reads)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd, stderr_apart: bool = False):
        self.lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers: list[threading.Thread] = []
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE if stderr_apart else subprocess.STDOUT,
                                        text=True, start_new_session=True)
        streams = [(self.process.stdout, self.stdout_lines if stderr_apart else None)]
        if stderr_apart:
            streams.append((self.process.stderr, self.stderr_lines))
        for stream, also in streams:
            reader = threading.Thread(target=self._read, args=(stream, also), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, stream, also: list[str] | None) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if also is not None:
                    also.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def read_to_end(self, timeout: float = 10.0) -> None:
        """After the process ended: until everything it wrote has been read."""
        for reader in self._readers:
            reader.join(timeout)

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, fragment: str, timeout: float = 90.0) -> str:
        """The first log line containing `fragment`; fails with the whole log if the process dies first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if fragment in line), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no log line with {fragment!r}; log:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.5))

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as platforms stop processes; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # only this process, which the test started
            self.process.wait()
            raise


def process_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a deployed bot: this machine's plus the test archive, models and Slack settings."""
    values = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FINDIMAGE_", "ELASTICSEARCH_"))}
    values.update(env)
    values.update(extra)
    values["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{values.get('PATH', '')}"
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HeldWork(WorkPool):
    """The bot's own work pool, with a gate in front of every job: answers are accepted (queued, counted
    in `pending`) but none starts until the test calls `release()`.

    A Slack ack that arrives while the answers are held shows, without any clock, that the ack did not
    wait for an answer: had it waited, the request would still be open (or the test would time out).
    """

    def __init__(self, workers: int = 4, max_queued: int = 32):
        super().__init__(workers=workers, max_queued=max_queued)
        self.gate = threading.Event()
        self._counts = threading.Condition()
        self.started = 0  # jobs that got past the gate

    def _run(self, job, args) -> None:
        self.gate.wait()
        with self._counts:
            self.started += 1
        super()._run(job, args)

    def release(self) -> None:
        self.gate.set()

    def hold(self) -> None:
        """Close the gate again: jobs from now on wait for the next `release()`."""
        with self._counts:
            self.gate.clear()
            self.started = 0

    def wait_until_pending(self, jobs: int, timeout: float = 30.0) -> None:
        """Until exactly `jobs` answers are accepted (queued, not finished); fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while self.pending != jobs:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.pending} answers pending, expected {jobs}")
            time.sleep(0.01)


@contextmanager
def held_work(workers: int = 4, max_queued: int = 32):
    """A HeldWork pool, released and shut down at the end (so a failing test leaves no thread waiting)."""
    work = HeldWork(workers, max_queued)
    try:
        yield work
    finally:
        work.release()
        work.shutdown(wait=False)


def said_in_slack(emu) -> dict:
    """How much the bot has posted so far (uploads, messages, response_url posts)."""
    return {"uploads": len(emu.uploads()), "messages": len(emu.messages()), "responses": len(emu.responses())}


def assert_answers_held(work: HeldWork, emu, jobs: int, said_before: dict | None = None) -> None:
    """After the acks: `jobs` answers accepted, none started, and the bot has said nothing more in Slack
    than `said_before` (a `said_in_slack` from before the requests; default nothing at all)."""
    work.wait_until_pending(jobs)
    assert work.started == 0, "an answer started before the gate was opened"
    said = said_in_slack(emu)
    before = said_before or {"uploads": 0, "messages": 0, "responses": 0}
    assert said == before, f"the bot spoke before its answers were released: {said}, before {before}"


class FakeClock:
    """A clock the test moves by hand (link expiry, cache lifetimes)."""

    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def serving(server):
    """A local HTTP server answering from a background thread until the block ends; yields its base URL."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def recording_server(host: str = "127.0.0.1"):
    """Another host: answers every request with a picture and records what it was sent."""
    requests_seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            body = jpeg_bytes(seed=2)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serving(ThreadingHTTPServer((host, 0), Handler)) as url:
        yield url, requests_seen


def titles(upload) -> list[str]:
    """Archive paths of an uploaded answer, in rank order (titles are "<rank>. <path> · <score>")."""
    return [f.title.split(" ")[1] for f in upload.files]


def ranks(upload) -> list[int]:
    return [int(f.title.split(".")[0]) for f in upload.files]


def buttons_post(emu, index: int = 0):
    """The index-th message with buttons that followed an uploaded answer (response_url or chat.postMessage)."""
    def found():
        posts = [p for p in [*emu.responses(), *emu.messages()] if p.blocks and any(
            b.get("type") == "actions" for b in p.blocks)]
        posts.sort(key=lambda p: p.at)
        return posts[index] if len(posts) > index else None

    return emu.wait_for(found, 15, f"buttons message #{index + 1}")


def _process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (gunicorn's workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += _process_tree(int(child))
    return found


def _loaded_libraries(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.split()[-1].endswith(".so") or ".so." in line.split()[-1]}


def libraries_of_tree(pid: int) -> set[str]:
    """The shared libraries loaded by `pid` and every process below it (is torch, or onnxruntime, in use?)."""
    return {library for process in _process_tree(pid) for library in _loaded_libraries(process)}

"""Settings from the environment and an optional `.env` file, validated once at start."""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl, unquote, urlsplit

from dotenv import dotenv_values

from findimage import logs
from findimage.errors import EXIT_USAGE, FindimageError
from findimage.i18n import SETTING_CHOICES as LANGUAGE_SETTINGS
from findimage.query import MAX_TOP_K

DEFAULT_IMAGE_MODEL = "clip-ViT-B-32"
DEFAULT_TEXT_MODEL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
DEFAULT_INFER_MODEL_ID = "sentence-transformers__clip-vit-b-32-multilingual-v1"
MIN_URL_SIGNING_KEY_BYTES = 32  # the image links' HMAC-SHA256 key: at least its output size

T = TypeVar("T")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@overload
def public_url(url: str) -> str: ...
@overload
def public_url(url: str | None) -> str | None: ...
def public_url(url: str | None) -> str | None:
    """The URL as it may be shown or logged: without its userinfo, query and fragment
    (`https://user:pw@host:9200/x?y` -> `https://host:9200/x`).

    The userinfo ends at the last `@`: a host never holds one, while a password typed unencoded may hold
    anything, `/ ? # @` included. urllib ends the host at the first `/`, `?` or `#` instead and would show
    the rest of such a password as the path; that URL does not work anyway (the settings check says so), but
    whatever says so must not show the password. The query goes too: a Redis URL may carry `?password=`.
    Cutting too much (an `@` in a path) only ever hides more."""
    if not url:
        return url
    scheme = _SCHEME.match(url)
    prefix = scheme.group() if scheme else ""  # no scheme (a URL that cannot be parsed): only what follows @
    after_userinfo = url[len(prefix):].rpartition("@")[2]
    return prefix + re.split(r"[?#]", after_userinfo, maxsplit=1)[0]


def url_problem(name: str, url: str, schemes: tuple[str, ...]) -> str | None:
    """Why the URL in setting `name` cannot be used as it is written (None: it can), in one sentence that
    shows it without credentials. Clients parse URLs with urllib (redis-py, kombu) or urllib3
    (Elasticsearch): a password holding `/`, `?` or `#` unencoded moves the host into the password, and
    their own errors then quote the URL, password included."""
    shown = f"{name}={public_url(url)!r}"
    if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        return f"{shown} must start with {' or '.join(f'{scheme}://' for scheme in schemes)}."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    # An @ after what urllib takes for the host: the password holds an unencoded / ? or #. Where the URL
    # cannot be parsed nobody knows which part is the password: it is not shown at all.
    if parts is None or not parts.hostname or "@" in url[len(parts.scheme) + 3 + len(parts.netloc):]:
        return unreadable_url(name, schemes[0])
    return None


def unreadable_url(name: str, scheme: str) -> str:
    """The sentence for a URL setting that cannot be parsed, which shows none of it."""
    return (f"{name} cannot be read as a URL: write it as {scheme}://[user:password@]host:port, with any "
            "/ ? # @ or % in the password percent-encoded (e.g. / as %2F, @ as %40).")


class ConfigError(FindimageError):
    """Every configuration problem found, one clear sentence each."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def setting(env: str, default: T, kind: type = str, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] = (), true: str | None = None, secret: bool = False) -> T:
    """A Settings field read from the environment variable `env`: its default, type and bounds, declared
    once here (the reader below reads every field from this)."""
    return field(default=default, repr=not secret, metadata={
        "env": env, "kind": kind, "minimum": minimum, "maximum": maximum, "choices": choices, "true": true})


class _Shown:
    """The repr of settings: secrets never appear (the repr=False fields), URLs without their userinfo."""

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}  # type: ignore[arg-type]
        if "elasticsearch_url" in values:
            values["elasticsearch_url"] = public_url(values["elasticsearch_url"])
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in values.items())})"


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one image may take: its pixels, and the memory of the decode (findimage.decode_budget);
    the budget also bounds the bytes of a file read for it."""

    max_pixels: int
    budget: int

    @classmethod
    def declared(cls) -> DecodeLimits:
        """The archive's limits as the settings declare them, for a caller given none (tests, tools)."""
        return ReadingSettings().archive_images


# The settings come in groups, each passed whole to what reads it: a part of findimage declares the group it
# needs (ElasticsearchSettings, say) and is given the one Settings, which is every group at once. A new
# setting is declared in its group, read where it is used, and documented in docs/configuration.md.


@dataclass(frozen=True, repr=False)
class CoreSettings(_Shown):
    """The archive, the data folder, the models and how queries rank; the processes' log and monitoring."""

    archive: Path = setting("FINDIMAGE_ARCHIVE", Path("archive"), Path)
    data_dir: Path = setting("FINDIMAGE_DATA_DIR", Path(".findimage"), Path)
    image_model: str = setting("FINDIMAGE_IMAGE_MODEL", DEFAULT_IMAGE_MODEL)
    text_model: str = setting("FINDIMAGE_TEXT_MODEL", DEFAULT_TEXT_MODEL)
    quantize: str = setting("FINDIMAGE_QUANTIZE", "off", choices=("off", "int8"))
    quantize_min_cosine: float = setting("FINDIMAGE_QUANTIZE_MIN_COSINE", 0.99, float, 0.0, 1.0)
    # The model runtime's threads (torch's, or ONNX Runtime's with a model in immich's layout); 0: one per core.
    torch_threads: int = setting("FINDIMAGE_TORCH_THREADS", 0, int, 0, 256)
    # ONNX Runtime's execution providers, in order of preference; none: CUDA where present, else the CPU.
    onnx_providers: tuple[str, ...] = setting("FINDIMAGE_ONNX_PROVIDERS", (), tuple)
    top_k: int = setting("FINDIMAGE_TOP_K", 5, int, 1, MAX_TOP_K)
    max_results: int = setting("FINDIMAGE_MAX_RESULTS", 50, int, 1, 200)  # how far "Show more" pages go in Slack
    num_candidates: int | None = setting("FINDIMAGE_NUM_CANDIDATES", None, int, 1, 10_000)
    max_query_chars: int = setting("FINDIMAGE_MAX_QUERY_CHARS", 1000, int, 1)
    weak_score: float = setting("FINDIMAGE_WEAK_SCORE", 0.6, float, 0.0, 1.0)
    # Text queries fuse CLIP with the words of archive paths (off: CLIP alone).
    hybrid: bool = setting("FINDIMAGE_HYBRID", True, bool, choices=("on", "off"), true="on")
    text_embedder: str = setting("FINDIMAGE_TEXT_EMBEDDER", "local", choices=("local", "elasticsearch"))
    # While Elasticsearch's license refuses _infer: the local text model, or off.
    text_fallback: str = setting("FINDIMAGE_TEXT_FALLBACK", "local", choices=("local", "off"))
    # /metrics, /healthz and /readyz of Socket Mode, `findimage schedule` and `findimage worker` (HTTP mode serves
    # them on PORT): unset, none. On every interface by default, as a container's port is published to its network.
    metrics_port: int | None = setting("FINDIMAGE_METRICS_PORT", None, int, 1, 65535)
    metrics_host: str = setting("FINDIMAGE_METRICS_HOST", "0.0.0.0")
    # Where HTTP mode's gunicorn workers write their metrics (prometheus_client's multiprocess mode; emptied at
    # start); unset: a temporary folder of the web server's own.
    metrics_multiprocess_dir: Path | None = setting("PROMETHEUS_MULTIPROC_DIR", None, Path)
    # The log (findimage.logs): unset level, the command's default (INFO for the bot, the schedule and workers,
    # WARNING for the commands run by hand); text or one JSON object per line.
    log_level: str | None = setting("FINDIMAGE_LOG_LEVEL", None, choices=tuple(logs.LEVELS))
    log_format: str = setting("FINDIMAGE_LOG_FORMAT", "text", choices=logs.FORMATS)


@dataclass(frozen=True, repr=False)
class ReadingSettings(_Shown):
    """How images, and the text in them, are read: by the indexer, the bot and the searches."""

    max_image_pixels: int = setting("FINDIMAGE_MAX_IMAGE_PIXELS", 120_000_000, int, 1_000_000)
    max_query_pixels: int = setting("FINDIMAGE_MAX_QUERY_PIXELS", 40_000_000, int, 1_000_000)
    # Memory one image decode may take (findimage.decode_budget); also the largest archive file read. Above a
    # 120-MP RGB or grey picture (the indexer's pixel limit) with its RGB copy, below what the bombs it exists
    # for claim (2 GB of a progressive JPEG's coefficients, a 1 GB TIFF tile).
    decode_budget_mb: int = setting("FINDIMAGE_DECODE_BUDGET_MB", 768, int, 16, 65_536)
    max_image_mb: float = setting("FINDIMAGE_MAX_IMAGE_MB", 50.0, float, 0.01)
    # Text in images: read by the indexer (after the embeddings) and fused into text queries.
    ocr: bool = setting("FINDIMAGE_OCR", True, bool, choices=("on", "off"), true="on")
    ocr_threads: int = setting("FINDIMAGE_OCR_THREADS", 1, int, 0, 64)  # onnxruntime threads; 0: its default
    # Reader children of an indexing pass (or a worker), reading at once: one per core of a 2-core server, each
    # with its own engine (~360 MB) and memory limit (below).
    ocr_readers: int = setting("FINDIMAGE_OCR_READERS", 2, int, 1, 64)
    # One image's reading taking longer is stopped and tried again on later passes (indexer.text_stage).
    ocr_timeout_seconds: float = setting("FINDIMAGE_OCR_TIMEOUT_SECONDS", 120.0, float, 1.0, 3600.0)
    # The reader child's memory (its RLIMIT_DATA: findimage.models.reader_process): past it the reading fails,
    # never the bot or the indexer. Measured here: the engine takes 360 MB, a 12-MP photo peaks at 550 MB, a
    # 12-MP screenshot at 1,010 MB, a 120-MP PNG (the pixel limit) at 1,600 MB; 2 GB leaves room above those.
    ocr_memory_mb: int = setting("FINDIMAGE_OCR_MEMORY_MB", 2048, int, 512, 1_048_576)

    @property
    def decode_budget_bytes(self) -> int:
        return self.decode_budget_mb * 2**20

    @property
    def max_image_bytes(self) -> int:
        """FINDIMAGE_MAX_IMAGE_MB (decimal) in bytes: the largest posted image downloaded."""
        return int(self.max_image_mb * 1_000_000)

    @property
    def ocr_memory_bytes(self) -> int:
        return self.ocr_memory_mb * 2**20

    @property
    def archive_images(self) -> DecodeLimits:
        """The limits of an archive image (indexed, previewed, read for text)."""
        return DecodeLimits(self.max_image_pixels, self.decode_budget_bytes)

    @property
    def query_images(self) -> DecodeLimits:
        """The limits of an image someone searches with or posts."""
        return DecodeLimits(self.max_query_pixels, self.decode_budget_bytes)


@dataclass(frozen=True, repr=False)
class IndexerSettings(_Shown):
    """Indexing passes: their batches, schedule and removals, and distributed indexing on a queue."""

    batch_size: int = setting("FINDIMAGE_BATCH_SIZE", 32, int, 1, 1024)
    index_interval_minutes: float = setting("FINDIMAGE_INDEX_INTERVAL_MINUTES", 15.0, float, 0.1)
    max_removal_fraction: float = setting("FINDIMAGE_MAX_REMOVAL_FRACTION", 0.5, float, 0.0, 1.0)
    # Distributed indexing: `findimage index`/`schedule` plan, `findimage worker` processes embed (Celery on Redis).
    queue_url: str | None = setting("FINDIMAGE_QUEUE_URL", None, secret=True)  # redis://[:password@]host:6379/0
    bucket_size: int = setting("FINDIMAGE_BUCKET_SIZE", 64, int, 1, 10_000)  # files per task
    queue_in_flight: int = setting("FINDIMAGE_QUEUE_IN_FLIGHT", 8, int, 1, 10_000)  # buckets queued at once
    # A bucket a worker took and did not finish (killed) goes to another after this; also how long the
    # planner waits for one before it queues it again (Redis restarted without its queue).
    queue_visibility_seconds: float = setting("FINDIMAGE_QUEUE_VISIBILITY_SECONDS", 600.0, float, 1.0, 86_400.0)
    # A rediss:// queue: the CA that signed Redis's certificate (unset: the system's CAs), and this process's
    # own certificate and key where Redis asks clients for one. Redis's certificate is always verified.
    queue_tls_ca_file: Path | None = setting("FINDIMAGE_QUEUE_TLS_CA_FILE", None, Path)
    queue_tls_cert_file: Path | None = setting("FINDIMAGE_QUEUE_TLS_CERT_FILE", None, Path)
    queue_tls_key_file: Path | None = setting("FINDIMAGE_QUEUE_TLS_KEY_FILE", None, Path)


@dataclass(frozen=True, repr=False)
class ElasticsearchSettings(_Shown):
    """The Elasticsearch store (unset url: the embedded store): the server, the alias and the layout of its
    indices, its searches, snapshots and the indexing lease."""

    elasticsearch_url: str | None = setting("ELASTICSEARCH_URL", None)
    elasticsearch_api_key: str | None = setting("ELASTICSEARCH_API_KEY", None, secret=True)  # or _FILE
    elasticsearch_username: str | None = setting("ELASTICSEARCH_USERNAME", None)
    elasticsearch_password: str | None = setting("ELASTICSEARCH_PASSWORD", None, secret=True)
    elasticsearch_ca_certs: Path | None = setting("ELASTICSEARCH_CA_CERTS", None, Path)
    index_name: str = setting("FINDIMAGE_INDEX", "my-image-embeddings")
    es_index_options: str = setting("FINDIMAGE_ES_INDEX_OPTIONS", "int8_hnsw",
                                    choices=("int8_hnsw", "hnsw", "flat", "int8_flat"))
    es_shards: int = setting("FINDIMAGE_ES_SHARDS", 1, int, 1, 64)
    es_rescore_oversample: float = setting("FINDIMAGE_ES_RESCORE_OVERSAMPLE", 3.0, float, 1.0, 20.0)
    # HNSW candidates a kNN search keeps per shard, at least (FINDIMAGE_NUM_CANDIDATES or a deeper search may ask more).
    es_num_candidates: int = setting("FINDIMAGE_ES_NUM_CANDIDATES", 100, int, 1, 10_000)
    # The HNSW graph of new indices (Lucene's limits): links per node, and candidates kept while linking one.
    es_hnsw_m: int = setting("FINDIMAGE_ES_HNSW_M", 32, int, 2, 512)
    es_hnsw_ef_construction: int = setting("FINDIMAGE_ES_HNSW_EF_CONSTRUCTION", 200, int, 10, 3200)
    # A `--full` rebuild merges its index into one segment before the alias moves, waiting at most this (0: no merge).
    es_force_merge_minutes: float = setting("FINDIMAGE_ES_FORCE_MERGE_MINUTES", 0.0, float, 0.0, 1440.0)
    # A number, or a range Elasticsearch expands with the nodes ("0-1": a copy once a second node joins).
    es_replicas: str = setting("FINDIMAGE_ES_REPLICAS", "0-1")
    es_timeout_seconds: float = setting("FINDIMAGE_ES_TIMEOUT_SECONDS", 10.0, float, 0.1)
    # The snapshot repository (registered in Elasticsearch) `findimage backup` writes to and `restore` reads.
    es_snapshot_repository: str | None = setting("FINDIMAGE_ES_SNAPSHOT_REPOSITORY", None)
    # The text model deployed in Elasticsearch for `_infer` (FINDIMAGE_TEXT_EMBEDDER=elasticsearch).
    infer_model_id: str = setting("FINDIMAGE_INFER_MODEL_ID", DEFAULT_INFER_MODEL_ID)
    # The indexing lease (and a restore's): a dead holder's lapses after it.
    lease_seconds: float = setting("FINDIMAGE_LEASE_SECONDS", 60.0, float, 1.0, 3600.0)

    @property
    def uses_elasticsearch(self) -> bool:
        return bool(self.elasticsearch_url)


@dataclass(frozen=True, repr=False)
class SlackSettings(_Shown):
    """The Slack bot: its tokens and links, where it answers, the channels it remembers, its HTTP port and queue."""

    slack_bot_token: str | None = setting("SLACK_BOT_TOKEN", None, secret=True)
    slack_signing_secret: str | None = setting("SLACK_SIGNING_SECRET", None, secret=True)
    slack_app_token: str | None = setting("SLACK_APP_TOKEN", None, secret=True)
    # Socket Mode's pings: a connection that answers none for four intervals (a silent network drop) is
    # closed and opened again; slack_bolt's default interval.
    socket_ping_seconds: float = setting("FINDIMAGE_SOCKET_PING_SECONDS", 10.0, float, 1.0, 300.0)
    slack_api_url: str = setting("SLACK_API_URL", "https://slack.com/api/")
    public_base_url: str | None = setting("FINDIMAGE_PUBLIC_BASE_URL", None)
    url_signing_key: str | None = setting("FINDIMAGE_URL_SIGNING_KEY", None, secret=True)
    # Answer in Slack Connect channels and to users of other teams.
    allow_shared_channels: bool = setting("FINDIMAGE_ALLOW_SHARED_CHANNELS", False, bool, choices=("true", "false"),
                                          true="true")
    # Channel ids the bot answers in; empty: every channel it is in.
    channels: tuple[str, ...] = setting("FINDIMAGE_CHANNELS", (), tuple)
    # Bot (B...) or app (A...) ids whose posted images are answered; other apps' posts are not.
    answer_bots: tuple[str, ...] = setting("FINDIMAGE_ANSWER_BOTS", (), tuple)
    # Images posted in channels, remembered where the channel's members turn it on (`/findimage remember`).
    remember: str = setting("FINDIMAGE_REMEMBER", "opt-in", choices=("off", "opt-in"))
    # The language the bot speaks: `auto` each person's Slack locale (German for de-*, else English), or
    # `de`/`en` for the whole workspace (findimage.i18n.choose).
    language: str = setting("FINDIMAGE_LANGUAGE", "auto", choices=LANGUAGE_SETTINGS)
    backfill_days: int = setting("FINDIMAGE_BACKFILL_DAYS", 90, int, 0, 3650)
    # conversations.history pace and page size: Tier 3 allows 50+ requests a minute; apps distributed
    # outside the Marketplace get 1 a minute with at most 15 messages (set 1 and 15 there).
    history_per_minute: float = setting("FINDIMAGE_HISTORY_PER_MINUTE", 40.0, float, 0.1, 1000.0)
    history_page: int = setting("FINDIMAGE_HISTORY_PAGE", 200, int, 1, 999)
    port: int = setting("PORT", 3000, int, 1, 65535)
    # Answers accepted and not finished per bot process; past it: "busy".
    max_queued: int = setting("FINDIMAGE_MAX_QUEUED", 32, int, 1, 10_000)


# The bases from the last to the first: a dataclass takes its fields from its last base first, and they are
# read (and their problems reported) in that order.
@dataclass(frozen=True, repr=False)
class Settings(SlackSettings, ElasticsearchSettings, IndexerSettings, ReadingSettings, CoreSettings):
    """Every setting, read once at start (load_settings): each group of it is passed where that group is read."""


class _Reader:
    """Reads typed values from a mapping and collects problems instead of failing at the first."""

    def __init__(self, values: Mapping[str, str]):
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        raw = self.values.get(name)
        if raw is None or not raw.strip():
            return default
        return raw.strip()

    def number(self, name: str, default: float | None, kind: type[int] | type[float] = int,
               minimum: float | None = None, maximum: float | None = None) -> float | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number.")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.problems.append(f"{name}={raw} must be {bounds}.")
            return default
        return value

    def choice(self, name: str, default: Any, choices: tuple[str, ...]) -> Any:
        """One of `choices` as declared, whatever the case it was written in."""
        raw = self.text(name)
        if raw is None:
            return default
        value = {choice.lower(): choice for choice in choices}.get(raw.lower())
        if value is None:
            self.problems.append(f"{name}={raw!r} must be one of: {', '.join(choices)}.")
            return default
        return value

    def field(self, declared: Field[Any]) -> object:
        """A Settings field's value, read as its declaration says (see `setting`)."""
        meta = declared.metadata
        default: Any = declared.default  # every setting declares one
        name, kind = meta["env"], meta["kind"]
        if kind is bool:
            false = next(c for c in meta["choices"] if c != meta["true"])
            return self.choice(name, meta["true"] if default else false, meta["choices"]) == meta["true"]
        if meta["choices"]:
            return self.choice(name, default, meta["choices"])
        if kind in (int, float):
            return self.number(name, default, kind, meta["minimum"], meta["maximum"])
        raw = self.text(name)
        if raw is None:
            return default
        if kind is tuple:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        return kind(raw)


def _values(environ: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    """`environ` (default: os.environ) over an optional `.env` file."""
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Settings from `environ` (default: os.environ) over an optional `.env` file; raises ConfigError.
    The secret ones' values are kept out of the log from here on (findimage.logs.keep_out)."""
    r = _Reader(_values(environ, env_file))
    read: dict[str, Any] = {f.name: r.field(f) for f in fields(Settings) if "env" in f.metadata}
    _check(read, r)
    settings = Settings(**read)
    logs.keep_out(*secret_values(settings))
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def log_options(environ: Mapping[str, str] | None = None,
                env_file: str | Path | None = ".env") -> tuple[str | None, str]:
    """FINDIMAGE_LOG_LEVEL (None: unset) and FINDIMAGE_LOG_FORMAT, read before the other settings: the log's
    format decides how their problems are written. A bad value is taken as unset here; load_settings
    reports it."""
    r = _Reader(_values(environ, env_file))
    declared = {f.name: f for f in fields(Settings)}
    return r.field(declared["log_level"]), r.field(declared["log_format"])  # type: ignore[return-value]


def secret_values(settings: Settings) -> list[str]:
    """The secret settings' values (the repr=False fields), and the passwords inside the URLs, as written
    and percent-decoded."""
    values = [getattr(settings, f.name) for f in fields(settings) if not f.repr]
    for url in (settings.queue_url, settings.elasticsearch_url):
        userinfo = (url or "").partition("://")[2].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        values += [password, unquote(password)]
    return [value for value in values if isinstance(value, str) and value]


def _check(read: dict[str, Any], r: _Reader) -> None:
    """What a single setting's type and bounds cannot say: settings that go together, files that must
    exist, formats. Each problem is one sentence; `read` is completed where a setting comes from a file."""
    ca_certs = read["elasticsearch_ca_certs"]
    if ca_certs and not ca_certs.is_file():
        r.problems.append(f"ELASTICSEARCH_CA_CERTS={ca_certs} does not exist.")
    if bool(read["elasticsearch_username"]) != bool(read["elasticsearch_password"]):
        r.problems.append("Set ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD together "
                          "(or use ELASTICSEARCH_API_KEY).")
    es_url = read["elasticsearch_url"]
    es_url_problem = es_url and url_problem("ELASTICSEARCH_URL", es_url, ("https", "http"))
    if es_url_problem:
        r.problems.append(es_url_problem)
    key_file = r.text("ELASTICSEARCH_API_KEY_FILE")
    if read["elasticsearch_api_key"] and key_file:
        r.problems.append("Set ELASTICSEARCH_API_KEY or ELASTICSEARCH_API_KEY_FILE, not both.")
    elif key_file:
        try:
            read["elasticsearch_api_key"] = Path(key_file).read_text().strip() or None
        except OSError as exc:
            r.problems.append(f"ELASTICSEARCH_API_KEY_FILE={key_file} cannot be read ({exc.strerror}).")
        else:
            if not read["elasticsearch_api_key"]:
                r.problems.append(f"ELASTICSEARCH_API_KEY_FILE={key_file} is empty.")
    if read["text_embedder"] == "elasticsearch" and not es_url:
        r.problems.append("FINDIMAGE_TEXT_EMBEDDER=elasticsearch needs ELASTICSEARCH_URL.")
    _check_queue(read, r)
    public_base_url = read["public_base_url"]
    if public_base_url and not public_base_url.startswith(("http://", "https://")):
        r.problems.append(f"FINDIMAGE_PUBLIC_BASE_URL={public_base_url!r} must start with http:// or https://.")
    for channel in read["channels"]:
        if not (channel[:1] in "CGD" and channel.isalnum() and channel.isupper()):
            r.problems.append(f"FINDIMAGE_CHANNELS: {channel!r} is not a channel id "
                              "(like C0123ABCD; names do not work).")
    for bot_id in read["answer_bots"]:
        if not (bot_id[:1] in "AB" and bot_id.isalnum() and bot_id.isupper()):
            r.problems.append(f"FINDIMAGE_ANSWER_BOTS: {bot_id!r} is not a bot or app id "
                              "(like B0123ABCD or A0123ABCD).")
    url_signing_key = read["url_signing_key"]
    if url_signing_key is not None and len(url_signing_key.encode("utf-8")) < MIN_URL_SIGNING_KEY_BYTES:
        # An HMAC key anyone can guess lets them sign links to every archive image; never echoed.
        r.problems.append(f"FINDIMAGE_URL_SIGNING_KEY must be at least {MIN_URL_SIGNING_KEY_BYTES} bytes long "
                          "(e.g. the output of `openssl rand -hex 32`).")
    if not _bindable_host(read["metrics_host"]):
        r.problems.append(f"FINDIMAGE_METRICS_HOST={read['metrics_host']!r} must be an IP address (e.g. 0.0.0.0 for "
                          "every interface, 127.0.0.1 for this machine only) or a host name.")
    if not re.fullmatch(r"\d{1,2}|\d{1,2}-(\d{1,2}|all)", read["es_replicas"]):
        r.problems.append(f"FINDIMAGE_ES_REPLICAS={read['es_replicas']!r} must be a number of replicas (e.g. 1) or a "
                          "range Elasticsearch expands with the cluster (e.g. 0-1 or 0-all).")


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                        r"[A-Za-z0-9])?)*")


def _bindable_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))
    return True


def _check_queue(read: dict[str, Any], r: _Reader) -> None:
    """FINDIMAGE_QUEUE_URL and its TLS files. Certificates are always verified (findimage.queue passes
    CERT_REQUIRED to Celery, indexer/queue.py): the URL may not carry TLS options of its own, which Celery
    would let win."""
    queue_url = read["queue_url"]
    tls = {name: read[field] for name, field in (("FINDIMAGE_QUEUE_TLS_CA_FILE", "queue_tls_ca_file"),
                                                  ("FINDIMAGE_QUEUE_TLS_CERT_FILE", "queue_tls_cert_file"),
                                                  ("FINDIMAGE_QUEUE_TLS_KEY_FILE", "queue_tls_key_file"))}
    for name, path in tls.items():
        if path and not path.is_file():
            r.problems.append(f"{name}={path} does not exist.")
    if tls["FINDIMAGE_QUEUE_TLS_KEY_FILE"] and not tls["FINDIMAGE_QUEUE_TLS_CERT_FILE"]:
        r.problems.append("FINDIMAGE_QUEUE_TLS_KEY_FILE needs FINDIMAGE_QUEUE_TLS_CERT_FILE (the certificate it "
                          "belongs to).")
    if not queue_url:
        return
    problem = url_problem("FINDIMAGE_QUEUE_URL", queue_url, ("redis", "rediss"))
    if problem:
        r.problems.append(problem)
        return
    options = {key.lower() for key, _ in parse_qsl(urlsplit(queue_url).query, keep_blank_values=True)}
    if "password" in options:
        r.problems.append(f"FINDIMAGE_QUEUE_URL={public_url(queue_url)!r}: put the password before the host "
                          "(redis://:password@host:6379/0), not in ?password=.")
    if any(key.startswith("ssl") for key in options):
        r.problems.append(f"FINDIMAGE_QUEUE_URL={public_url(queue_url)!r}: set TLS with the "
                          "FINDIMAGE_QUEUE_TLS_* settings, not with ssl options in the URL (Redis's certificate "
                          "is always verified).")
    if any(tls.values()) and not queue_url.startswith("rediss://"):
        r.problems.append("The FINDIMAGE_QUEUE_TLS_* settings need a rediss:// FINDIMAGE_QUEUE_URL (TLS).")


def export_to_environment(name: str, value: str | None) -> None:
    """Set (with None: remove) a variable of this process's environment that a library reads by itself and
    that forked processes inherit (prometheus_client's PROMETHEUS_MULTIPROC_DIR, set by bot.server)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def report_problems(problems: list[str]) -> None:
    """Every configuration problem on stderr, one line each, as every command prints them at start."""
    for problem in problems:
        logs.tell(f"findimage: configuration problem: {problem}")


def load_settings_or_report() -> Settings | None:
    """Settings for a command's start: None after printing every problem."""
    try:
        return load_settings()
    except ConfigError as exc:
        report_problems(exc.problems)
        return None


def require_slack(settings: Settings) -> None:
    """The bot needs its tokens; the indexer and CLI do not."""
    problems = []
    if not settings.slack_bot_token:
        problems.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-...).")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        problems.append("SLACK_SIGNING_SECRET is not set (needed in HTTP mode; set SLACK_APP_TOKEN for Socket Mode).")
    if settings.slack_app_token and not settings.slack_app_token.startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp-.")
    if problems:
        raise ConfigError(problems)

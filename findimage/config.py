"""Settings from the environment and an optional `.env` file, validated once at start."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

DEFAULT_IMAGE_MODEL = "clip-ViT-B-32"
DEFAULT_TEXT_MODEL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
DEFAULT_INFER_MODEL_ID = "sentence-transformers__clip-vit-b-32-multilingual-v1"
MIN_URL_SIGNING_KEY_BYTES = 32  # the image links' HMAC-SHA256 key: at least its output size


class ConfigError(Exception):
    """Every configuration problem found, one clear sentence each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Settings:
    archive: Path = Path("archive")
    data_dir: Path = Path(".findimage")
    image_model: str = DEFAULT_IMAGE_MODEL
    text_model: str = DEFAULT_TEXT_MODEL
    quantize: str = "off"
    quantize_min_cosine: float = 0.99
    torch_threads: int = 0  # 0: torch's default (one per core)
    batch_size: int = 32
    index_interval_minutes: float = 15.0
    top_k: int = 5
    max_results: int = 50  # how far "Show more" pages go in Slack
    num_candidates: int | None = None
    max_query_chars: int = 1000
    max_image_pixels: int = 120_000_000
    max_query_pixels: int = 40_000_000
    decode_budget_mb: int = 768  # memory one image decode may take (findimage.decode_budget)
    max_removal_fraction: float = 0.5
    max_image_mb: float = 50.0
    weak_score: float = 0.6
    hybrid: bool = True  # text queries fuse CLIP with the words of archive paths (off: CLIP alone)
    # Elasticsearch (unset url -> embedded store)
    elasticsearch_url: str | None = None
    elasticsearch_api_key: str | None = field(default=None, repr=False)
    elasticsearch_username: str | None = None
    elasticsearch_password: str | None = field(default=None, repr=False)
    elasticsearch_ca_certs: Path | None = None
    index_name: str = "my-image-embeddings"
    es_index_options: str = "int8_hnsw"
    es_shards: int = 1
    es_rescore_oversample: float = 3.0
    es_replicas: str = "0-1"  # a number, or a range Elasticsearch expands with the nodes ("0-1": a copy once a second node joins)
    es_timeout_seconds: float = 10.0
    text_embedder: str = "local"
    infer_model_id: str = DEFAULT_INFER_MODEL_ID
    text_fallback: str = "local"  # while Elasticsearch's license refuses _infer: the local text model, or off
    # Slack
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    public_base_url: str | None = None
    url_signing_key: str | None = field(default=None, repr=False)
    allow_shared_channels: bool = False  # answer in Slack Connect channels and to users of other teams
    channels: tuple[str, ...] = ()  # channel ids the bot answers in; empty: every channel it is in
    answer_bots: tuple[str, ...] = ()  # bot (B...) or app (A...) ids whose posted images are answered; others' are not
    port: int = 3000
    max_queued: int = 32  # answers accepted and not finished per bot process; past it: "busy"
    lease_seconds: float = 60.0  # an indexing pass's Elasticsearch lease; a dead holder's lapses after it

    @property
    def decode_budget_bytes(self) -> int:
        return self.decode_budget_mb * 2**20

    @property
    def uses_elasticsearch(self) -> bool:
        return bool(self.elasticsearch_url)

    def __repr__(self) -> str:
        """Secrets never appear (the repr=False fields), the Elasticsearch URL without its userinfo."""
        from .es_client import public_url

        values = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        values["elasticsearch_url"] = public_url(self.elasticsearch_url)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in values.items())})"


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

    def number(self, name: str, default, kind=int, minimum=None, maximum=None):
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

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in choices:
            self.problems.append(f"{name}={value!r} must be one of: {', '.join(choices)}.")
            return default
        return value


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Settings from `environ` (default: os.environ) over an optional `.env` file; raises ConfigError."""
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    r = _Reader(values)

    ca_certs = r.text("ELASTICSEARCH_CA_CERTS")
    if ca_certs and not Path(ca_certs).is_file():
        r.problems.append(f"ELASTICSEARCH_CA_CERTS={ca_certs} does not exist.")
    username, password = r.text("ELASTICSEARCH_USERNAME"), r.text("ELASTICSEARCH_PASSWORD")
    if bool(username) != bool(password):
        r.problems.append("Set ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD together (or use ELASTICSEARCH_API_KEY).")
    es_url = r.text("ELASTICSEARCH_URL")
    if es_url and not es_url.startswith(("http://", "https://")):
        from .es_client import public_url

        r.problems.append(f"ELASTICSEARCH_URL={public_url(es_url)!r} must start with http:// or https://.")
    api_key, key_file = r.text("ELASTICSEARCH_API_KEY"), r.text("ELASTICSEARCH_API_KEY_FILE")
    if api_key and key_file:
        r.problems.append("Set ELASTICSEARCH_API_KEY or ELASTICSEARCH_API_KEY_FILE, not both.")
    elif key_file:
        try:
            api_key = Path(key_file).read_text().strip()
        except OSError as exc:
            r.problems.append(f"ELASTICSEARCH_API_KEY_FILE={key_file} cannot be read ({exc.strerror}).")
        else:
            if not api_key:
                r.problems.append(f"ELASTICSEARCH_API_KEY_FILE={key_file} is empty.")
    text_embedder = r.choice("FINDIMAGE_TEXT_EMBEDDER", "local", ("local", "elasticsearch"))
    if text_embedder == "elasticsearch" and not es_url:
        r.problems.append("FINDIMAGE_TEXT_EMBEDDER=elasticsearch needs ELASTICSEARCH_URL.")
    public_base_url = r.text("FINDIMAGE_PUBLIC_BASE_URL")
    if public_base_url and not public_base_url.startswith(("http://", "https://")):
        r.problems.append(f"FINDIMAGE_PUBLIC_BASE_URL={public_base_url!r} must start with http:// or https://.")
    channels = tuple(c.strip() for c in (r.text("FINDIMAGE_CHANNELS") or "").split(",") if c.strip())
    for channel in channels:
        if not (channel[:1] in "CGD" and channel.isalnum() and channel.isupper()):
            r.problems.append(f"FINDIMAGE_CHANNELS: {channel!r} is not a channel id (like C0123ABCD; names do not work).")

    url_signing_key = r.text("FINDIMAGE_URL_SIGNING_KEY")
    if url_signing_key is not None and len(url_signing_key.encode("utf-8")) < MIN_URL_SIGNING_KEY_BYTES:
        # An HMAC key anyone can guess lets them sign links to every archive image; never echoed.
        r.problems.append(f"FINDIMAGE_URL_SIGNING_KEY must be at least {MIN_URL_SIGNING_KEY_BYTES} bytes long "
                          "(e.g. the output of `openssl rand -hex 32`).")

    answer_bots = tuple(b.strip() for b in (r.text("FINDIMAGE_ANSWER_BOTS") or "").split(",") if b.strip())
    for bot_id in answer_bots:
        if not (bot_id[:1] in "AB" and bot_id.isalnum() and bot_id.isupper()):
            r.problems.append(f"FINDIMAGE_ANSWER_BOTS: {bot_id!r} is not a bot or app id (like B0123ABCD or A0123ABCD).")

    es_replicas = r.text("FINDIMAGE_ES_REPLICAS", "0-1")
    if not re.fullmatch(r"\d{1,2}|\d{1,2}-(\d{1,2}|all)", es_replicas):
        r.problems.append(f"FINDIMAGE_ES_REPLICAS={es_replicas!r} must be a number of replicas (e.g. 1) or a range "
                          "Elasticsearch expands with the cluster (e.g. 0-1 or 0-all).")
        es_replicas = "0-1"

    settings = Settings(
        archive=Path(r.text("FINDIMAGE_ARCHIVE", "archive")),
        data_dir=Path(r.text("FINDIMAGE_DATA_DIR", ".findimage")),
        image_model=r.text("FINDIMAGE_IMAGE_MODEL", DEFAULT_IMAGE_MODEL),
        text_model=r.text("FINDIMAGE_TEXT_MODEL", DEFAULT_TEXT_MODEL),
        quantize=r.choice("FINDIMAGE_QUANTIZE", "off", ("off", "int8")),
        quantize_min_cosine=r.number("FINDIMAGE_QUANTIZE_MIN_COSINE", 0.99, float, 0.0, 1.0),
        torch_threads=r.number("FINDIMAGE_TORCH_THREADS", 0, int, 0, 256),
        batch_size=r.number("FINDIMAGE_BATCH_SIZE", 32, int, 1, 1024),
        index_interval_minutes=r.number("FINDIMAGE_INDEX_INTERVAL_MINUTES", 15.0, float, 0.1),
        top_k=r.number("FINDIMAGE_TOP_K", 5, int, 1, 50),
        max_results=r.number("FINDIMAGE_MAX_RESULTS", 50, int, 1, 200),
        num_candidates=r.number("FINDIMAGE_NUM_CANDIDATES", None, int, 1, 10_000),
        max_query_chars=r.number("FINDIMAGE_MAX_QUERY_CHARS", 1000, int, 1),
        max_image_pixels=r.number("FINDIMAGE_MAX_IMAGE_PIXELS", 120_000_000, int, 1_000_000),
        max_query_pixels=r.number("FINDIMAGE_MAX_QUERY_PIXELS", 40_000_000, int, 1_000_000),
        decode_budget_mb=r.number("FINDIMAGE_DECODE_BUDGET_MB", 768, int, 16, 65_536),
        max_removal_fraction=r.number("FINDIMAGE_MAX_REMOVAL_FRACTION", 0.5, float, 0.0, 1.0),
        max_image_mb=r.number("FINDIMAGE_MAX_IMAGE_MB", 50.0, float, 0.01),
        weak_score=r.number("FINDIMAGE_WEAK_SCORE", 0.6, float, 0.0, 1.0),
        hybrid=r.choice("FINDIMAGE_HYBRID", "on", ("on", "off")) == "on",
        elasticsearch_url=es_url,
        elasticsearch_api_key=api_key or None,
        elasticsearch_username=username,
        elasticsearch_password=password,
        elasticsearch_ca_certs=Path(ca_certs) if ca_certs else None,
        index_name=r.text("FINDIMAGE_INDEX", "my-image-embeddings"),
        es_shards=r.number("FINDIMAGE_ES_SHARDS", 1, int, 1, 64),
        es_rescore_oversample=r.number("FINDIMAGE_ES_RESCORE_OVERSAMPLE", 3.0, float, 1.0, 20.0),
        es_replicas=es_replicas,
        es_index_options=r.choice("FINDIMAGE_ES_INDEX_OPTIONS", "int8_hnsw", ("int8_hnsw", "hnsw", "flat", "int8_flat")),
        es_timeout_seconds=r.number("FINDIMAGE_ES_TIMEOUT_SECONDS", 10.0, float, 0.1),
        text_embedder=text_embedder,
        infer_model_id=r.text("FINDIMAGE_INFER_MODEL_ID", DEFAULT_INFER_MODEL_ID),
        text_fallback=r.choice("FINDIMAGE_TEXT_FALLBACK", "local", ("local", "off")),
        slack_bot_token=r.text("SLACK_BOT_TOKEN"),
        slack_signing_secret=r.text("SLACK_SIGNING_SECRET"),
        slack_app_token=r.text("SLACK_APP_TOKEN"),
        slack_api_url=r.text("SLACK_API_URL", "https://slack.com/api/"),
        public_base_url=public_base_url,
        url_signing_key=url_signing_key,
        allow_shared_channels=r.choice("FINDIMAGE_ALLOW_SHARED_CHANNELS", "false", ("true", "false")) == "true",
        channels=channels,
        answer_bots=answer_bots,
        port=r.number("PORT", 3000, int, 1, 65535),
        max_queued=r.number("FINDIMAGE_MAX_QUEUED", 32, int, 1, 10_000),
        lease_seconds=r.number("FINDIMAGE_LEASE_SECONDS", 60.0, float, 1.0, 3600.0),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def report_problems(problems: list[str]) -> None:
    """Every configuration problem on stderr, one line each, as every command prints them at start."""
    for problem in problems:
        print(f"findimage: configuration problem: {problem}", file=sys.stderr)


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

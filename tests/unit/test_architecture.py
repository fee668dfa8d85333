"""The layering a newcomer relies on: the core imports nothing from the bot or the indexer, those two
never import each other, no package has import cycles, the core speaks to neither Slack nor the queue, a
store's package is reached only through the one factory, and the architecture page's tables name every module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("findimage", "bot", "indexer")


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module this one imports (at the top or inside functions), resolved to dotted names."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


ALL = {name: path for package in PACKAGES for name, path in modules(package).items()}
ALL["findimage_cli"] = ROOT / "findimage_cli.py"
GRAPH = {name: {i for i in imports(name, path) if i in ALL and i != name} for name, path in ALL.items()}


def test_the_core_imports_neither_the_bot_nor_the_indexer_and_those_two_not_each_other():
    crossing = {(name, target) for name, targets in GRAPH.items() for target in targets
                if (name.split(".")[0] == "findimage" and target.split(".")[0] in ("bot", "indexer"))
                or (name.startswith("bot") and target.startswith("indexer"))
                or (name.startswith("indexer") and target.startswith("bot"))}
    assert crossing == set()


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_has_import_cycles(package):
    # Imports made only for type annotations count too: a cycle between two modules says that what both
    # need belongs in a third.
    within = {name: {t for t in targets if t.startswith(f"{package}.")} for name, targets in GRAPH.items()
              if name.startswith(f"{package}.")}
    cycles = []

    def visit(name, path):
        if name in path:
            cycles.append(path[path.index(name):] + [name])
            return
        for target in within.get(name, ()):
            visit(target, path + [name])

    for name in within:
        visit(name, [])
    assert cycles == []


STORE_PACKAGES = ("findimage.stores.embedded", "findimage.stores.elasticsearch")
# The factory makes every choice between implementations; the CLI's `keys` command is Elasticsearch's alone.
MAY_IMPORT_A_STORE = {"findimage.backends", "findimage_cli"}


def test_outside_a_stores_package_only_the_factory_imports_it():
    reaching_in = {(name, target) for name, targets in GRAPH.items() for target in targets
                   for package in STORE_PACKAGES
                   if (target == package or target.startswith(package + "."))
                   and not (name == package or name.startswith(package + ".")) and name not in MAY_IMPORT_A_STORE}
    assert reaching_in == set()


def test_the_cli_imports_the_elasticsearch_package_only_for_its_keys_command():
    cli = ast.parse((ROOT / "findimage_cli.py").read_text())
    reaching = {(fn.name, node.module) for fn in ast.walk(cli) if isinstance(fn, ast.FunctionDef)
                for node in ast.walk(fn) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith(STORE_PACKAGES)}
    assert reaching == {("cmd_keys", "findimage.stores.elasticsearch.privileges")}


def test_the_architecture_page_has_a_table_row_for_every_module():
    """Each module by its path within its package (`stores/elasticsearch/store.py`, `handlers/command.py`), as
    the first cell of a row of a module table: a file name that only happens to appear somewhere in
    backticks is not enough. A package's folder may have a row of its own (`handlers/`); the CLI is named."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \|", page, re.MULTILINE))
    modules_by_row = {path.relative_to(ROOT / name.split(".")[0]).as_posix() for name, path in ALL.items()
                      if path.name != "__init__.py" and name != "findimage_cli"}
    folders = {row for row in rows if row.endswith("/")}
    assert sorted(modules_by_row - rows) == []
    assert sorted(rows - modules_by_row - folders) == [], "rows for modules that do not exist"
    assert all(any(module.startswith(folder) for module in modules_by_row) for folder in folders)
    assert "`findimage_cli.py`" in page


# Libraries of the bot's and the indexer's trades: the core stores and decides on what the bot learns from
# Slack (remembered channels, answered events), but never speaks to Slack or to the queue itself.
SLACK_LIBRARIES = {"slack_sdk", "slack_bolt"}
QUEUE_LIBRARIES = {"celery", "kombu", "redis"}


def test_the_core_imports_no_slack_or_queue_library_and_the_indexer_no_slack_library():
    speaking = {(name, found) for name, path in ALL.items()
                for found in {i.split(".")[0] for i in imports(name, path)}
                if (name.startswith("findimage.") and found in SLACK_LIBRARIES | QUEUE_LIBRARIES)
                or (name.startswith("indexer") and found in SLACK_LIBRARIES)}
    assert speaking == set()


def test_settings_are_read_from_the_environment_in_one_module():
    """findimage/config.py declares and reads every setting; no other module looks at os.environ."""
    reading = set()
    for name, path in ALL.items():
        if name == "findimage.config":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                reading.add(name)
            if isinstance(node, ast.ImportFrom) and node.module == "dotenv":
                reading.add(name)
    assert reading == set()

"""The layering a newcomer relies on: the core imports nothing from the bot or the indexer, those two
never import each other, the core has no import cycles, and the architecture page names every module."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
GRAPH = {name: {i for i in imports(name, path) if i in ALL and i != name} for name, path in ALL.items()}


def test_the_core_imports_neither_the_bot_nor_the_indexer_and_those_two_not_each_other():
    crossing = {(name, target) for name, targets in GRAPH.items() for target in targets
                if (name.startswith("findimage") and target.split(".")[0] in ("bot", "indexer"))
                or (name.startswith("bot") and target.startswith("indexer"))
                or (name.startswith("indexer") and target.startswith("bot"))}
    assert crossing == set()


def test_the_core_has_no_import_cycles():
    core = {name: {t for t in targets if t.startswith("findimage.")} for name, targets in GRAPH.items()
            if name.startswith("findimage.")}
    cycles = []

    def visit(name, path):
        if name in path:
            cycles.append(path[path.index(name):] + [name])
            return
        for target in core.get(name, ()):
            visit(target, path + [name])

    for name in core:
        visit(name, [])
    assert cycles == []


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = [path.relative_to(ROOT).as_posix() for name, path in ALL.items()
               if path.name != "__init__.py" and path.parent.name != "handlers" and f"`{path.name}`" not in page]
    assert "`handlers/`" in page
    assert missing == []

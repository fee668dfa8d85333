"""One query from the door to the store: its limits and the sentence of each mistake are written in
findimage/query.py alone, and every door makes its query with that module's parser."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from findimage import query

ROOT = Path(__file__).resolve().parents[2]
QUERY_MODULE = ROOT / "findimage" / "query.py"
PRODUCT = sorted([*(ROOT / "findimage").rglob("*.py"), *(ROOT / "bot").rglob("*.py"), *(ROOT / "indexer").rglob("*.py"),
                  ROOT / "findimage_cli.py"])
SENTENCES = (query.K_OUT_OF_RANGE, query.NOT_A_DATE, query.DATES_OUT_OF_ORDER, query.OUTSIDE_THE_ARCHIVE,
             query.GIVEN_TWICE, query.NOTHING_TO_LOOK_FOR, query.TEXT_AND_IMAGE, query.EMPTY_TEXT, query.TEXT_TOO_LONG,
             query.NO_IMAGE_FILE)


def where(found) -> list[str]:
    return [path.relative_to(ROOT).as_posix() for path in PRODUCT if found(path)]


def texts(path: Path) -> list[str]:
    """The module's string literals (implicitly joined ones as one, an f-string's literal parts)."""
    return [node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_each_mistake_is_said_in_one_place():
    # Every piece of a sentence between its placeholders that is long enough to be recognised.
    pieces = {piece.strip() for sentence in SENTENCES for piece in re.split(r"\{[^}]*\}", sentence)
              if len(piece.strip()) >= 12}
    assert len(pieces) >= len(SENTENCES)
    for piece in sorted(pieces):
        assert where(lambda path, piece=piece: any(piece in text for text in texts(path))) == \
            ["findimage/query.py"], piece


def test_the_limits_of_k_are_named_once_and_the_default_k_is_decided_once():
    def names_a_k_limit(path: Path) -> bool:
        targets = [t for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Assign, ast.AnnAssign))
                   for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
        return any(isinstance(t, ast.Name) and re.fullmatch(r"MAX_\w*K", t.id) for t in targets)

    assert where(names_a_k_limit) == ["findimage/query.py"]
    # FINDIMAGE_TOP_K is declared in the settings and read where a query asks for its default k only.
    assert where(lambda path: re.search(r"\.top_k\b", path.read_text()) is not None) == ["findimage/query.py"]


def test_every_door_makes_its_query_with_the_parser():
    def makes_queries(path: Path) -> bool:
        return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Query"
                   for node in ast.walk(ast.parse(path.read_text())))

    # The search builds one for the library's callers (tests, tools: by_text and the like) only.
    assert where(makes_queries) == ["findimage/query.py", "findimage/search.py"]

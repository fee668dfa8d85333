"""The bot's sentences and their catalogues (findimage/i18n.py): every sentence marked in the code has a German
translation with the same placeholders, the catalogue holds nothing the code no longer says, the package
ships it, and a sentence in bot/ that is not marked for translation fails here."""
from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from findimage.i18n import GERMAN, LANGUAGES, LOCALE_DIR, language

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")

# Modules of bot/ whose words no Slack user reads in a conversation with the bot, so they stay English.
NOT_SLACK_CONVERSATION = {
    "bot/doctor.py": "`findimage doctor`: the command line's, for whoever runs findimage",
    "bot/credentials.py": "the start's checks of the tokens, for whoever runs findimage",
    "bot/metrics.py": "Prometheus help texts",
    "bot/web/images.py": "HTTP answers to an image link's fetch: no Slack user, no locale",
    "bot/web/slack_events.py": "HTTP answers to a malformed request to /slack/events",
}
# Sentence-like strings of bot/ that are not said to anyone in Slack (each with why).
NOT_SAID = {
    "the Slack client has no bot token to download images with": "a RuntimeError: the user reads "
                                                                  "'Something went wrong' with a reference",
    "not a button value this bot writes": "BadButton's reason, logged; the user reads UNREADABLE",
    "an answer needs a result or a sentence instead of one": "a programming error",
    "refused to send the token to ": "the adapter's refusal, answered as NotASlackHost's sentence",
    " missing, repeated or malformed": "an image link's reason, logged",
    ": all  render slots busy": "a preview's reason, logged",
}
MARKED = {"_", "ngettext", "N_"}  # findimage.i18n's: Language._, Language.ngettext, N_
LOGGING = {"debug", "info", "warning", "error", "exception", "critical", "log"}
SENTENCE = re.compile(r"[A-Za-z]{2,}(?:[ ,;:]+[a-z'’]+){3,}")  # four words in a row


def extracted() -> dict[str | tuple, list[str]]:
    """Every message the code marks, as Babel's extraction (`make messages`) finds it: id -> where."""
    method_map = [(m["pattern"], m["method"]) for m in PYPROJECT["tool"]["babel"]["mappings"]]
    found: dict[str | tuple, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(ROOT), method_map):
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


def catalogue(code: str):
    with open(LOCALE_DIR / code / "LC_MESSAGES" / "findimage.po", "rb") as source:
        return read_po(source, locale=code)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_every_sentence_marked_in_the_code_is_in_the_german_catalogue_translated_with_its_placeholders():
    german, messages = catalogue(GERMAN), extracted()
    assert len(messages) > 100, "the extraction found the bot's sentences"
    problems = []
    for message, where in messages.items():
        entry = german.get(message)
        forms = (entry.string if isinstance(entry.string, tuple) else (entry.string,)) if entry else ()
        if entry is None or entry.fuzzy or not forms or not all(forms):
            problems.append(f"{where[0]}: not translated: {message!r}")
            continue
        wanted = placeholders(message[-1] if isinstance(message, tuple) else message)
        problems += [f"{where[0]}: placeholders {placeholders(form)} instead of {wanted}: {form!r}"
                     for form in forms if placeholders(form) - {"count"} != wanted - {"count"}]
    assert problems == [], "run `make messages` and translate:\n" + "\n".join(problems)


def test_the_german_catalogue_holds_only_sentences_the_code_says_and_german_plural_forms():
    german, messages = catalogue(GERMAN), extracted()
    keys = {m[0] if isinstance(m, tuple) else m for m in messages}
    stale = [entry.id for entry in german if entry.id and (entry.id[0] if isinstance(entry.id, tuple)
                                                           else entry.id) not in keys]
    assert stale == [], "`make messages` drops what the code no longer says"
    assert german.num_plurals == 2 and german.plural_expr == "(n != 1)"


def test_the_catalogues_are_read_and_ship_with_the_package():
    said = language(GERMAN)
    assert said._("Show more") == "Mehr zeigen"
    assert said.ngettext("{count} message", "{count} messages", 1) == "1 Nachricht"
    assert said.ngettext("{count} message", "{count} messages", 1234) == "1.234 Nachrichten"
    shipped = PYPROJECT["tool"]["setuptools"]["package-data"]["findimage"]
    for code in LANGUAGES:
        if code == "en":
            continue  # the code's own sentences
        po = (LOCALE_DIR / code / "LC_MESSAGES" / "findimage.po").relative_to(ROOT / "findimage").as_posix()
        assert any(fnmatch.fnmatch(po, pattern) for pattern in shipped), po


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def unmarked_sentences(path: Path) -> list[tuple[int, str]]:
    """Strings of `path` that read like a sentence and are neither marked for translation, nor a docstring,
    nor what a log line says."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, exempt: bool) -> None:
        if isinstance(node, ast.Call):
            name = _name(node.func)
            logged = isinstance(node.func, ast.Attribute) and _name(node.func.value) in {"log", "logging", "logger"}
            exempt = exempt or name in MARKED or (name in LOGGING and logged)
        if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if not exempt and SENTENCE.search(text) and text not in NOT_SAID:
                found.append((node.lineno, text))
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if (not exempt and id(node) not in docstrings and SENTENCE.search(node.value)
                    and node.value not in NOT_SAID):
                found.append((node.lineno, node.value))
            return
        for child in ast.iter_child_nodes(node):
            visit(child, exempt)

    visit(tree, False)
    return found


def test_every_sentence_the_bot_says_in_slack_is_marked_for_translation():
    unmarked = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
                for path in sorted((ROOT / "bot").rglob("*.py"))
                if path.relative_to(ROOT).as_posix() not in NOT_SLACK_CONVERSATION
                for line, text in unmarked_sentences(path)]
    assert unmarked == [], "wrap them in said._(...) or N_(...):\n" + "\n".join(unmarked)


def test_the_scan_finds_an_unmarked_sentence(tmp_path):
    """The check above cannot pass by finding nothing: an English sentence added plainly is caught."""
    module = tmp_path / "new.py"
    module.write_text('def hello(said):\n    """Says hello."""\n    log.info("said hello to some people")\n'
                      '    return said._("Hello there, how are you?"), "Sorry, I could not do that."\n')
    assert unmarked_sentences(module) == [(4, "Sorry, I could not do that.")]

"""The words of an archive path (folders and file name) as people remember them, for keyword search, and
the words of text read from an image, cut and folded alike.

Both stores index these words and queries are cut the same way, so `Kundenbesuch_Bosch_03.jpg` is found
by "bosch", `2024-06 Sommerfest/` by "sommerfest" or "2024", `Ärger.jpg` by "ärger" or "arger", and a
sign reading "Größenordnung" by "grossenordnung".
"""
from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Collection

# Names cameras and phones give every file: they say nothing about the picture.
CAMERA_NOISE = {"img", "dsc", "dscn", "dscf", "pxl", "mvimg", "dcim", "vid", "pano", "burst"}

# Runs of letters or of digits; camelCase is split before (a lowercase letter followed by an uppercase one,
# and an acronym followed by a word: "HTMLPage" -> "HTML Page").
_TOKEN = re.compile(r"[^\W\d_]+|\d+")
_CAMEL = re.compile(r"(?<=[^\W\d_])(?=[^\W\d_])"
                    r"(?:(?<=[a-zß-öø-ÿ])(?=[A-ZÀ-ÖØ-Þ])|(?<=[A-ZÀ-ÖØ-Þ])(?=[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]))")
# Where _CAMEL splits, this matches: most texts have no such place, and looking for one costs half as much as
# the split (a text query cuts the names and text of ~100 candidates into words).
_CAMEL_ANYWHERE = re.compile(r"[a-zß-öø-ÿ][A-ZÀ-ÖØ-Þ]|[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]")


def fold(word: str) -> str:
    """Lowercase without accents: 'Ärger' -> 'arger', 'Straße' -> 'strasse'."""
    if word.isascii():  # the same result, without decomposing character by character (most words are)
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str, drop: Collection[str] = CAMERA_NOISE) -> list[str]:
    """Folded words of free text: split at anything not a letter or digit, at camelCase and between
    letters and digits; the words in `drop` (camera prefixes) and single letters dropped, numbers kept."""
    found = []
    for token in _TOKEN.findall(_CAMEL.sub(" ", text) if _CAMEL_ANYWHERE.search(text) else text):
        word = fold(token)
        if word in drop or (len(word) == 1 and not word.isdigit()):
            continue
        found.append(word)
    return found


def name_words(relative_path: str) -> str:
    """The words of a relative path, space separated, without the file's extension."""
    folder, name = posixpath.split(relative_path.replace("\\", "/"))
    stem = posixpath.splitext(name)[0] if not name.startswith(".") else name
    return " ".join(words(f"{folder} {stem}"))


def text_words(text: str) -> list[str]:
    """The words of text read from an image: folded as path words are, but "IMG" on a sign is a word."""
    return words(text, drop=())


# Words that stand in almost every text (English and German articles, prepositions, pronouns): a query
# like "das Foto vom Schild Schillerplatz" must be matched by "schillerplatz", not by a slide that says "das".
STOPWORDS = frozenset("""
a an and are as at be by for from has have i in is it of on or that the this to was were with you your
am an auf aus bei das dem den der des die ein eine einem einen einer eines es fur im in ist mit nach oder
sie sind und vom von vor war zu zum zur uber
""".split())


def meaningful(words: list[str]) -> list[str]:
    """The query words without stopwords; all of them where nothing else is left."""
    kept = [w for w in words if w not in STOPWORDS]
    return kept or words


def query_words(text: str, drop: Collection[str] = CAMERA_NOISE) -> list[str]:
    """The distinct words of a query, in order, as names were cut into words (`drop=()`: as text was)."""
    return list(dict.fromkeys(words(text, drop)))

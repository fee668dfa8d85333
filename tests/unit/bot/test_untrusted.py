"""Names, titles, read text and queries from outside cannot forge lines, links, mentions or formatting in
the bot's messages, and the messages stay valid Block Kit within Slack's limits after escaping."""
from __future__ import annotations

import re
import unicodedata

import pytest
from mrkdwn_reading import read_mrkdwn
from slack_sdk.models.blocks import Block

from bot.replies import Answer, answer_text, button_blocks, file_title, image_blocks, image_heading, text_snippet
from bot.untrusted import PLACEHOLDER, fit, one_line, shown
from findimage.i18n import ENGLISH, GERMAN, Language, english, language
from findimage.records import Match, Posted
from findimage.search import SearchResult

FORGED_LINE = "photo.jpg\n*IT notice*: reset your password at <https://evil.example|slack.com>"

# (what it is, the untrusted text)
NASTY = [
    ("a newline with a bold line and a mrkdwn link", FORGED_LINE),
    ("CR LF and a quote", "a.jpg\r\n> quoted"),
    ("a line separator", "a.jpg\u2028*bold*"),
    ("a paragraph separator", "a.jpg\u2029_italic_"),
    ("a vertical tab, form feed, NEL", "a\x0bb\x0cc\x85d"),
    ("NUL, ESC and a terminal colour", "ok\x00\x1b[31mred\x1b[0m"),
    ("DEL and C1 controls", "a\x7fb\x9bc\x90d"),
    ("a right-to-left override", "invoice\u202egpj.exe"),
    ("bidi embeddings and marks", "\u202ax\u202by\u202cz\u202d\u200e\u200f\u061c"),
    ("bidi isolates", "\u2066a\u2067b\u2068c\u2069"),
    ("zero-width spaces and joiners", "pay\u200bpal\u200c\u200d\u2060\ufeff.jpg"),
    ("an undecodable byte of a file name", "caf\udce9.jpg"),
    ("<!channel>", "<!channel> look"),
    ("<!here> and <!everyone>", "<!here> <!everyone>"),
    ("a user mention", "<@U0ADMIN> approved"),
    ("a channel link", "<#C0GENERAL|general>"),
    ("a date token", "<!date^1392734382^{date}|Feb 18>"),
    ("@channel typed out", "@channel @HERE @everyone"),
    ("bold, italic and strike-through", "*bold* _italic_ ~struck~"),
    ("backticks closing a code span", "`*x*` ``` block ```"),
    ("a quote at the start", "> not a quote"),
    ("a bare URL", "https://evil.example/login"),
    ("a link with a misleading label", "<https://evil.example|https://slack.com>"),
    ("entities already escaped", "&lt;!channel&gt; &amp;"),
]
IDS = [what for what, _ in NASTY]
TEXTS = [text for _, text in NASTY]


def unescaped(mrkdwn: str) -> str:
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_a_shown_name_is_one_code_span_with_no_link_mention_formatting_or_hidden_character(text):
    mrkdwn = shown(text)
    reading = read_mrkdwn(f"*1.* {mrkdwn} _name matched_")

    assert reading.lines == [f"*1.* {mrkdwn} _name matched_"]
    assert mrkdwn.startswith("`") and mrkdwn.endswith("`") and mrkdwn.count("`") == 2
    assert reading.tokens == [] and reading.mentions == [] and reading.urls == [] and reading.quotes == []
    assert reading.styled == ["1.", "name matched"], "only the bot's own formatting"
    assert reading.hidden == []
    assert not re.search(r"&(?!amp;|lt;|gt;)", mrkdwn), "every & starts an entity"


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_plain_text_fields_get_one_line_without_hidden_characters(text):
    plain = one_line(text)

    assert read_mrkdwn(plain).lines == [plain] and read_mrkdwn(plain).hidden == []


@pytest.mark.parametrize("text, expected", [
    ("events/2024/Sommerfest_2024 *best*.jpg", "`events/2024/Sommerfest_2024 *best*.jpg`"),
    ("R&D <draft>.png", "`R&amp;D &lt;draft&gt;.png`"),
    ("Größenordnung 雪 جبل 👨‍👩‍👧.jpg", f"`Größenordnung 雪 جبل 👨{PLACEHOLDER}👩{PLACEHOLDER}👧.jpg`"),
    ("photo@2x.png", "`photo@2x.png`"),
    ("a\r\n\r\nb", f"`a{PLACEHOLDER}b`"),
    ("@channel", "`\uff20channel`"),
    ("it`s", "`it\u02cbs`"),
    ("  padded  ", "`padded`"),
])
def test_a_name_still_reads_as_it_is_stored(text, expected):
    assert shown(text) == expected


def test_text_without_hidden_characters_is_kept_as_it_is():
    for text in ("events/2024/stage.jpg", "Größe 雪 جبل", "a\u00a0b"):
        assert one_line(text) == text


@pytest.mark.parametrize("limit", [20, 21, 22, 23, 24, 25, 60])
def test_a_long_name_is_cut_after_escaping_never_inside_an_entity(limit):
    mrkdwn = shown("&<>" * 40, limit)

    assert len(mrkdwn) <= limit and mrkdwn.endswith("…`")
    assert re.fullmatch(r"`(&amp;|&lt;|&gt;)*…`", mrkdwn)


def test_a_read_line_keeps_its_bold_query_words_and_loses_everything_else():
    line = "\x1b[2J\x00<!channel> *URGENT*\u202e: disk quota exceeded @here > <https://evil.example|slack.com>\n"
    snippet = text_snippet(line, ["disk", "quota"])
    reading = read_mrkdwn(f">{snippet}")

    assert reading.lines == [f">{snippet}"] and reading.hidden == []
    assert reading.tokens == [] and reading.mentions == [] and reading.styled == ["disk", "quota"]
    assert "URGENT" in snippet and "slack.com" in snippet


def test_fit_cuts_at_a_line_end_after_escaping():
    text = "\n".join(f"*{n}.* {shown('&' * 100)}" for n in range(40))
    cut = fit(text, 3000)

    assert len(cut) <= 3000 and cut.endswith("\n…")
    assert all(line in text.split("\n") for line in cut.split("\n")[:-1])


@pytest.mark.parametrize("limit", range(2990, 3000))
def test_fit_cuts_one_long_line_outside_entities_and_code_spans(limit):
    line = "heading " + " ".join(shown("&" * 50, 1000) for _ in range(20))
    cut = fit(line, limit)

    assert len(cut) <= limit and cut.endswith("…")
    assert not re.search(r"&(?!amp;|lt;|gt;)", cut) and cut.count("`") % 2 == 0


# ---- the blocks an answer becomes -----------------------------------------------------------------------

def nasty_answer(long: bool = False, said: Language | None = None) -> Answer:
    path = ("deep/" * 900 if long else "") + FORGED_LINE.replace("\n", "\n&")
    archive = [Match(f"{n:064x}", "photo.jpg", f"{path}{n}.jpg", 0.5, "ab" * 32, also_at=(path, "<!here>"),
                     matched=("image", "text"), text_snippet="<!channel> &&& \x1b[31m *call*\u202e 555")
               for n in range(5)]
    posted = Posted("C0CHANNEL", "F0NASTY", "1700000000.000100", "U0POSTER", title="<!channel>\nfree *pizza*")
    remembered = Match(posted.image_id, "pizza.jpg", "x", 0.4, posted=posted)
    result = SearchResult([*archive, remembered], words=["call"])
    said = said or english()
    return Answer(image_heading("<@U0ADMIN>\n" + "&" * (2000 if long else 1), said), result, said=said)


@pytest.mark.parametrize("code", [ENGLISH, GERMAN])
@pytest.mark.parametrize("long", [False, True], ids=["names", "names far over Slack's limits"])
def test_an_answer_about_nasty_names_is_valid_block_kit_within_slacks_limits(long, code):
    answer = nasty_answer(long, language(code))
    blocks = image_blocks([answer], lambda image_id, sha256: f"https://findimage.example.org/images/{image_id}.jpg")
    blocks += button_blocks([answer, nasty_answer(long, language(code))])

    for block in blocks:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError on a field over its limit
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    titles = [b["title"]["text"] for b in blocks if b["type"] == "image"] + [b["alt_text"] for b in blocks
                                                                              if b["type"] == "image"]
    for text in sections:
        reading = read_mrkdwn(text)
        assert reading.tokens == ["<@U0POSTER>"] * text.count("<@U0POSTER>") and reading.mentions == []
        assert reading.hidden == [] and not re.search(r"&(?!amp;|lt;|gt;)", text)
        assert not any("IT notice" in s or "pizza" in s for s in reading.styled)
        assert all(line.startswith(("*", "Archiv", ">", "…")) for line in reading.lines)
        assert all(line.count("`") % 2 == 0 for line in reading.lines)
    assert all(read_mrkdwn(title).lines == [title] and read_mrkdwn(title).hidden == [] for title in titles)


def test_the_fallback_text_has_the_same_lines_as_the_section():
    answer = nasty_answer()
    text = answer_text(answer)
    reading = read_mrkdwn(text)

    assert len(reading.lines) == 1 + 6 + 5, "the heading, six matches, five read lines"
    assert reading.quotes == [line for line in reading.lines if line.startswith(">")]
    assert file_title(1, answer.matches[0], False, english()).count("\n") == 0


def test_hidden_characters_are_exactly_the_control_format_and_separator_categories():
    # planes 0 and 1 and the tags' plane 14: the others hold only ideographs and private use
    every = [chr(code) for code in [*range(0x20000), *range(0xE0000, 0xE1000)]]
    hidden = [c for c in every if unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}]
    visible = "".join(c for c in every if unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Zl", "Zp"})

    assert one_line(visible) == visible
    assert all(one_line(f"a{c}b") == f"a{PLACEHOLDER}b" for c in hidden)
    assert {"\x00", "\x1b", "\n", "\x85", "\u200d", "\u202e", "\u2066", "\u061c", "\u2028"} <= set(hidden)

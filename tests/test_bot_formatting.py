"""Model markdown -> Telegram HTML, and splitting at 4096. Checked against the local server's parser, which
follows Telegram's rules (and error texts), so "can't parse entities" here means it would fail on Telegram."""

from __future__ import annotations

import random

import pytest

from bot.formatting import TELEGRAM_TEXT_LIMIT, clean, split_markdown, tags_are_balanced, to_html, utf16_len
from local_bot_api.formatting import format_text


def visible(markdown: str) -> tuple[str, list[dict]]:
    return format_text(to_html(markdown), "HTML")


def test_common_markdown_becomes_entities():
    text, entities = visible(
        "# Title\n**bold**, *italic*, ~~gone~~, `x<y`, [link](https://e.com/?a=1&b=2)\n- item"
    )
    assert text == "Title\nbold, italic, gone, x<y, link\n• item"
    kinds = {e["type"] for e in entities}
    assert {"bold", "italic", "strikethrough", "code", "text_link"} <= kinds
    link = next(e for e in entities if e["type"] == "text_link")
    assert link["url"] == "https://e.com/?a=1&b=2"


def test_code_fence_keeps_language_and_escapes():
    text, entities = visible("Look:\n```python\nif a < b and c > d:\n    print('&')\n```\nDone")
    assert "if a < b and c > d:\n    print('&')" in text
    assert any(e["type"] == "pre" and e.get("language") == "python" for e in entities)


def test_unclosed_fence_while_streaming_is_code_so_far():
    text, entities = visible("Start\n```js\nlet x = 1 <")
    assert text.endswith("let x = 1 <")
    assert any(e["type"] == "pre" for e in entities)


@pytest.mark.parametrize(
    "markdown",
    [
        "*a **b* c**",
        "**unclosed bold",
        "snake_case_name and __init__",
        "5 * 3 * 2 = 30",
        "<b>not a tag</b>",
        "a_b_c *x_y* _z",
        "`code with ** inside`",
        "[x](javascript:alert(1))",
        "& &amp; &lt;",
    ],
)
def test_tricky_text_is_always_accepted(markdown):
    # format_text raises EntityParseError exactly where Telegram says "can't parse entities"
    text, _ = visible(markdown)
    assert text.strip()


def test_random_model_noise_never_breaks_parsing():
    rng = random.Random(7)
    alphabet = "ab *_~`[]()<>&#-\n\\!.😀ю"
    for _ in range(500):
        markdown = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
        if not clean(markdown).strip():
            continue
        html = to_html(clean(markdown))
        assert tags_are_balanced(html)
        format_text(html, "HTML")  # raises if Telegram would refuse it


def test_identifiers_are_not_italicised():
    text, entities = visible("call my_function_name with snake_case")
    assert text == "call my_function_name with snake_case" and not entities


def test_clean_removes_control_characters():
    assert clean("a\x00b\x1cc\r\nd\te") == "abc\nd\te"


def test_short_text_is_one_piece():
    assert split_markdown("hello") == ["hello"]


def test_split_prefers_paragraphs_and_respects_the_limit():
    paragraphs = [f"Paragraph {i}. " + "word " * 150 for i in range(20)]
    pieces = split_markdown("\n\n".join(paragraphs))
    assert len(pieces) > 1
    assert all(utf16_len(p) <= TELEGRAM_TEXT_LIMIT for p in pieces)
    assert all(p.startswith("Paragraph") for p in pieces)  # cut between paragraphs, not inside
    assert " ".join(" ".join(pieces).split()) == " ".join(" ".join(paragraphs).split())  # nothing lost


def test_split_counts_utf16_units():
    pieces = split_markdown("😀" * 5000)  # 10,000 UTF-16 units
    assert all(utf16_len(p) <= TELEGRAM_TEXT_LIMIT for p in pieces)
    assert "".join(pieces) == "😀" * 5000


def test_split_without_spaces_cuts_hard():
    pieces = split_markdown("x" * 10_000)
    assert "".join(pieces) == "x" * 10_000 and all(len(p) <= TELEGRAM_TEXT_LIMIT for p in pieces)


def test_split_inside_code_block_closes_and_reopens_it():
    code = "\n".join(f"value_{i} = compute({i})  # step {i}" for i in range(400))
    markdown = f"Here is the code:\n```python\n{code}\n```\nThat's all."
    pieces = split_markdown(markdown)
    assert len(pieces) >= 3
    for piece in pieces:
        assert utf16_len(piece) <= TELEGRAM_TEXT_LIMIT
        text, entities = format_text(to_html(piece), "HTML")  # each piece parses on its own
        assert utf16_len(text) <= TELEGRAM_TEXT_LIMIT
    assert pieces[0].endswith("```") and pieces[1].startswith("```python\n")
    rebuilt = "\n".join(format_text(to_html(p), "HTML")[0] for p in pieces)
    for i in (0, 199, 399):
        assert f"value_{i} = compute({i})" in rebuilt


def test_plain_fallback_piece_fits_too():
    pieces = split_markdown("**" + "bold " * 2000 + "**")
    assert all(utf16_len(p) <= TELEGRAM_TEXT_LIMIT for p in pieces)  # sent as-is if HTML were refused


def test_smaller_limit():
    pieces = split_markdown("word " * 200, limit=300)
    assert len(pieces) >= 4 and all(utf16_len(p) <= 300 for p in pieces)

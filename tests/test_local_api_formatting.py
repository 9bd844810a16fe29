"""Telegram's formatting rules in the local Bot API: the parsers directly, then through a real aiogram Bot."""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile

from local_bot_api.entities import EntityParseError, UnsupportedParseMode, utf16_len
from local_bot_api.formatting import format_text
from tests.local_api_helpers import png

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user


def kinds(entities):
    return [(e["type"], e["offset"], e["length"]) for e in entities]


def test_utf16_offsets_count_astral_characters_twice():
    assert utf16_len("a😀b") == 4
    text, entities = format_text("😀 <b>x</b> 👍🏽<i>y</i>", "HTML")
    assert text == "😀 x 👍🏽y"
    assert kinds(entities) == [("bold", 3, 1), ("italic", 9, 1)]


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        ("&lt;b&gt; &amp; &quot;q&quot; &#65;&#x42; &nbsp; a > b", '<b> & "q" AB &nbsp; a > b', []),
        ("<B>caps</B> <strong>s</strong>", "caps s", [("bold", 0, 4), ("bold", 5, 1)]),
        ("<b>a<i>b</i></b>", "ab", [("bold", 0, 2), ("italic", 1, 1)]),
        ("<b>x</>", "x", [("bold", 0, 1)]),  # an empty end tag closes the last one, as Telegram allows
        ("<code>a<b>b</b></code>", "ab", [("code", 0, 2)]),  # nothing nests inside code
        ("  <b> padded </b>  ", "padded", [("bold", 0, 6)]),  # trimmed, entities shifted
        ("<a href='tg://user?id=1'>u</a>", "u", [("text_link", 0, 1)]),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍", [("custom_emoji", 0, 2)]),
    ],
)
def test_html_parser(source, text, entities):
    parsed_text, parsed = format_text(source, "HTML")
    assert parsed_text == text
    assert kinds(parsed) == entities


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<a href=https://x.org>x</a>", "Unexpected end of name token at byte offset 8"),
        ('<a href="x>x</a>', "Unclosed end tag at byte offset 8"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("ё <p>x</p>", 'Unsupported start tag "p" at byte offset 3'),  # byte offsets: "ё" is 2 bytes
        ("<b class>x</b>", 'Expected equal sign in declaration of an attribute of the tag "b"'),
        ("<tg-emoji>x</tg-emoji>", "Invalid custom emoji identifier specified"),
    ],
)
def test_html_errors(source, error):
    with pytest.raises(EntityParseError) as caught:
        format_text(source, "HTML")
    assert error in str(caught.value)


def test_markdown_v2():
    text, entities = format_text(
        "*b* _i_ __u__ ~s~ ||sp|| [l](https://x.org/a\\)b) `c.d` ```py\nx = 1\n```\n>quote\n>more\nend\\!",
        "MarkdownV2",
    )
    assert text == "b i u s sp l c.d x = 1\n\nquote\nmore\nend!"
    assert kinds(entities) == [
        ("bold", 0, 1),
        ("italic", 2, 1),
        ("underline", 4, 1),
        ("strikethrough", 6, 1),
        ("spoiler", 8, 2),
        ("text_link", 11, 1),
        ("code", 13, 3),
        ("pre", 17, 6),
        ("blockquote", 24, 10),
    ]
    assert [e.get("url") for e in entities if e["type"] == "text_link"] == ["https://x.org/a)b"]
    assert [e.get("language") for e in entities if e["type"] == "pre"] == ["py"]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("1.5", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("a-b", "Character '-' is reserved"),
        ("(x)", "Character '(' is reserved"),
        ("*open", "Can't find end of Bold entity at byte offset 0"),
        ("ok _open", "Can't find end of Italic entity at byte offset 3"),
        ("```\nno end", "Can't find end of PreCode entity"),
    ],
)
def test_markdown_v2_errors(source, error):
    with pytest.raises(EntityParseError) as caught:
        format_text(source, "MarkdownV2")
    assert error in str(caught.value)


def test_legacy_markdown_and_modes():
    text, entities = format_text("*b* _i_ `c` [t](https://x.org) ```python\nprint()```", "Markdown")
    assert text == "b i c t print()"
    assert kinds(entities) == [
        ("bold", 0, 1),
        ("italic", 2, 1),
        ("code", 4, 1),
        ("text_link", 6, 1),
        ("pre", 8, 7),
    ]
    with pytest.raises(EntityParseError, match="Can't find end of the entity starting at byte offset 0"):
        format_text("*b", "Markdown")
    with pytest.raises(UnsupportedParseMode):
        format_text("x", "BBCode")
    assert format_text("*not parsed*", None) == ("*not parsed*", [])


def test_entities_telegram_detects_by_itself():
    text, entities = format_text(
        "/start@omni_bot hi @someone #tag https://x.org/a, me@x.org <code>/no</code>", "HTML"
    )
    assert kinds(entities) == [
        ("bot_command", 0, 15),
        ("mention", 19, 8),
        ("hashtag", 28, 4),
        ("url", 33, 15),
        ("email", 50, 8),
        ("code", 59, 3),
    ]
    # explicit entities instead of parse_mode are kept as given (and checked against the text)
    assert format_text("abc", None, [{"type": "bold", "offset": 1, "length": 9}])[1] == [
        {"type": "bold", "offset": 1, "length": 2}
    ]


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("<b>bold</i>", 'Unmatched end tag at byte offset 7, expected "</b>", found "</i>"'),
        ("<b>never closed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<blink>x</blink>", 'Unsupported start tag "blink"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
    ],
)
async def test_bad_html_is_refused(bot, user, markup, error):
    with pytest.raises(TelegramBadRequest, match="can't parse entities") as caught:
        await bot.send_message(user.id, markup, parse_mode="HTML")
    assert error in caught.value.message


async def test_good_html_tags_become_entities(bot, user):
    sent = await bot.send_message(
        user.id,
        '<pre><code class="language-python">print(1)</code></pre>\n<a href="https://x.org/?a=1&amp;b=2">link</a> '
        "<tg-spoiler>s</tg-spoiler> <blockquote expandable>q</blockquote> <s>x</s><u>y</u>",
        parse_mode="HTML",
    )
    kinds = {e.type: e for e in sent.entities}
    assert kinds["pre"].language == "python" and "code" not in kinds
    assert kinds["text_link"].url == "https://x.org/?a=1&b=2"
    assert {"spoiler", "expandable_blockquote", "strikethrough", "underline"} <= set(kinds)


async def test_markdown_v2_needs_escapes(bot, user):
    with pytest.raises(TelegramBadRequest, match="Character '.' is reserved"):
        await bot.send_message(user.id, "Done. *bold*", parse_mode="MarkdownV2")
    sent = await bot.send_message(user.id, "Done\\. *bold* `a.b`", parse_mode="MarkdownV2")
    assert sent.text == "Done. bold a.b"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 6, 4), ("code", 11, 3)]


async def test_text_length_limits(bot, user):
    await bot.send_message(user.id, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(user.id, "x" * 4097)
    # the limit applies after parsing: markup does not count
    await bot.send_message(user.id, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(user.id, "<b> </b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(user.id, BufferedInputFile(png(50, 50), "a.png"), caption="c" * 1025)

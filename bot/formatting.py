"""Model text (markdown-ish) -> Telegram HTML, and long texts -> pieces Telegram accepts.

Why HTML and not MarkdownV2: MarkdownV2 refuses a whole message for one unescaped `.` or `-`, and model text
is full of them. In HTML only `&`, `<`, `>` need escaping, so a message can only be refused for bad tags,
and `to_html` checks its own tags before returning (falling back to escaped plain text).

Lengths are counted in UTF-16 code units, as Telegram counts them (an emoji is two).
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

TELEGRAM_TEXT_LIMIT = 4096

_FENCE = re.compile(r"^ {0,3}```\s*([\w+#.-]*)\s*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\[\]\n]+)\]\((https?://[^\s()]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_CLOSE_FENCE = "\n```"
# C0 controls other than tab and newline: invisible at best, and a small or broken model does emit them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# Blank look-alikes: Hangul fillers and the empty Braille pattern are "letters" and "symbols" to Unicode, and
# the usual way to send a message that looks empty. (Zero-width spaces and joiners, the word joiner, BOM and
# bidi marks are format characters, category Cf, and caught by category.)
_BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Nothing a reader would see: only whitespace, zero-width or other format characters, blank look-alikes."""
    return all(
        ch.isspace() or ch in _BLANK_LOOKALIKES or unicodedata.category(ch) in ("Cf", "Cc") for ch in text
    )


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def clean(text: str) -> str:
    """Model text fit to show: no control characters, no lone surrogates, CRLF as LF."""
    text = text.replace("\r\n", "\n").encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)


# --- markdown -> HTML ---------------------------------------------------------------------------------------


def _inline(text: str) -> str:
    """One line of prose: escape, then turn markdown marks into tags. Code spans are cut out first so that
    nothing inside them is formatted."""
    pieces = []
    last = 0
    for match in _INLINE_CODE.finditer(text):
        pieces.append(_marks(text[last : match.start()]))
        pieces.append(f"<code>{html.escape(match.group(1), quote=False)}</code>")
        last = match.end()
    pieces.append(_marks(text[last:]))
    return "".join(pieces)


def _marks(text: str) -> str:
    text = html.escape(text, quote=False)
    # The text is escaped already (& is &amp;), so only a quote could still end the attribute early.
    text = _LINK.sub(lambda m: f'<a href="{m.group(2).replace(chr(34), "&quot;")}">{m.group(1)}</a>', text)
    text = _BOLD.sub(r"<b>\2</b>", text)
    text = _STRIKE.sub(r"<s>\1</s>", text)
    text = _ITALIC_STAR.sub(r"<i>\1</i>", text)
    return _ITALIC_UNDERSCORE.sub(r"<i>\1</i>", text)


def _prose_line(line: str) -> str:
    if heading := _HEADING.match(line):
        return f"<b>{_inline(heading.group(1))}</b>"
    if bullet := _BULLET.match(line):
        return f"{bullet.group(1)}• {_inline(line[bullet.end() :])}"
    return _inline(line)


def _pre(lines: list[str], language: str) -> str:
    code = html.escape("\n".join(lines), quote=False)
    if language:
        return f'<pre><code class="language-{html.escape(language)}">{code}</code></pre>'
    return f"<pre>{code}</pre>"


def to_html(markdown: str) -> str:
    """Telegram HTML for `markdown`. An unclosed ``` fence (a streaming answer) is shown as code so far."""
    out: list[str] = []
    code: list[str] | None = None
    language = ""
    for line in markdown.split("\n"):
        fence = _FENCE.match(line)
        if code is None and fence:
            code, language = [], fence.group(1)
        elif code is not None and fence and not fence.group(1):
            out.append(_pre(code, language))
            code = None
        elif code is not None:
            code.append(line)
        else:
            out.append(_prose_line(line))
    if code is not None:
        out.append(_pre(code, language))
    result = "\n".join(out)
    # Markdown that nests badly (`*a **b* c**`) would give crossed tags, which Telegram refuses with "can't
    # parse entities". Checking here is cheaper than a refused request, and plain text beats no text.
    return result if tags_are_balanced(result) else html.escape(markdown, quote=False)


def has_visible_text(markdown: str) -> bool:
    """Whether Telegram would see any text: a piece that is only markup or spaces is refused ("message text
    is empty"), and a streaming answer can be exactly that for a moment."""
    return not is_blank(html.unescape(re.sub(r"<[^>]+>", "", to_html(markdown))))


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


def tags_are_balanced(text: str) -> bool:
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    return checker.ok and not checker.stack


# --- splitting ----------------------------------------------------------------------------------------------


def _prefix_within(text: str, budget: int) -> int:
    """The longest prefix (in characters) whose UTF-16 length is <= budget."""
    if utf16_len(text) <= budget:
        return len(text)
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return index
    return len(text)


def _best_cut(text: str, hard: int) -> int:
    """Where to end a piece of at most `hard` characters: a paragraph, a line, a sentence, a word; in that
    order of preference, and never so early that the piece is tiny."""
    window = text[:hard]
    for separator, min_fraction in (
        ("\n\n", 0.5),
        ("\n", 0.3),
        (". ", 0.5),
        ("! ", 0.5),
        ("? ", 0.5),
        (" ", 0.5),
    ):
        at = window.rfind(separator)
        if at > hard * min_fraction:
            return at + len(separator)
    return hard


def _open_fence(text: str) -> str | None:
    """The language of a ``` fence left open at the end of `text` ('' for none given), else None."""
    language = None
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if fence and language is None:
            language = fence.group(1)
        elif fence and not fence.group(1):
            language = None
    return language


def split_markdown(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Cut `text` into pieces of at most `limit` UTF-16 units, each valid markdown on its own: a code block
    that crosses a cut is closed at the end of one piece and reopened (same language) in the next.

    Raw pieces are within the limit, so both the HTML rendering (whose visible text is never longer than the
    markdown) and the plain-text fallback fit in one message."""
    pieces: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        hard = _prefix_within(rest, limit - len(_CLOSE_FENCE))
        cut = _best_cut(rest, hard)
        head, rest = rest[:cut], rest[cut:]
        language = _open_fence(head)
        if language is not None:
            head = head.rstrip("\n") + _CLOSE_FENCE
            reopen = f"```{language}\n"
            rest = reopen + rest
            if utf16_len(reopen) >= cut:  # cannot make progress inside this fence
                rest = rest[len(reopen) :]
        else:
            head = head.rstrip()
            rest = rest.lstrip("\n")
        if head.strip():
            pieces.append(head)
    if rest.strip() or not pieces:
        pieces.append(rest)
    return pieces

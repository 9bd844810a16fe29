"""parse_mode=MarkdownV2 and the legacy Markdown, with Telegram's rules and error wording.

MarkdownV2's trap is its reserved characters: any of _*[]()~`>#+-=|{}.! outside an entity's markup must
be escaped with a backslash, otherwise the whole message is refused. Inside `code` and ```pre``` only
` and \\ are special.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .entities import EntityParseError, TextBuilder, byte_offset, entity

_RESERVED = set("_*[]()~`>#+-=|{}.!")
_TYPE_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "PreCode",
}


@dataclass
class _Open:
    kind: str
    offset: int  # UTF-16 offset in the output
    begin: int  # index in the source, for error messages
    language: str = ""


class _MarkdownV2:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.out = TextBuilder()
        self.stack: list[_Open] = []
        self.quote: _Open | None = None
        self.entities: list[dict[str, Any]] = []

    def close(self, opened: _Open, **extra: Any) -> None:
        length = self.out.offset - opened.offset
        if length > 0:
            self.entities.append(entity(opened.kind, opened.offset, length, **extra))

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        src = self.src
        while self.i < len(src):
            ch = src[self.i]
            in_code = bool(self.stack) and self.stack[-1].kind in ("code", "pre")
            if ch == "\\" and self.i + 1 < len(src) and 0 < ord(src[self.i + 1]) <= 126:
                self.out.add(src[self.i + 1])
                self.i += 2
                continue
            if not in_code and (self.i == 0 or src[self.i - 1] == "\n") and self.line_start():
                continue
            if ch not in (("`",) if in_code else _RESERVED):
                self.out.add(ch)
                self.i += 1
                continue
            self.markup(ch)
        if self.stack:
            opened = self.stack[-1]
            raise EntityParseError(
                f"Can't find end of {_TYPE_NAMES[opened.kind]} entity at byte offset "
                f"{byte_offset(src, opened.begin)}"
            )
        self.end_quote()
        return self.out.text(), self.entities

    def line_start(self) -> bool:
        """Handles '>' and '**>' that open or continue a block quote; True when it consumed them."""
        src = self.src
        if src.startswith("**>", self.i) or src.startswith(">", self.i):
            expandable = src[self.i] == "*"
            if self.quote is None:
                self.quote = _Open(
                    "expandable_blockquote" if expandable else "blockquote", self.out.offset, self.i
                )
            self.i += 3 if expandable else 1
            return True
        if self.quote is not None and self.i > 0:
            self.end_quote(drop_newline=True)
        return False

    def end_quote(self, drop_newline: bool = False) -> None:
        if self.quote is None:
            return
        length = self.out.offset - self.quote.offset - (1 if drop_newline else 0)
        if length > 0:
            self.entities.append(entity(self.quote.kind, self.quote.offset, length))
        self.quote = None

    def reserved(self, ch: str) -> EntityParseError:
        return EntityParseError(f"Character '{ch}' is reserved and must be escaped with the preceding '\\'")

    def markup(self, ch: str) -> None:
        src, i = self.src, self.i
        top = self.stack[-1].kind if self.stack else None
        two, three = src[i : i + 2], src[i : i + 3]
        if ch == "`":
            if three == "```":
                if top == "pre":
                    opened = self.stack.pop()
                    self.close(opened, **({"language": opened.language} if opened.language else {}))
                    self.i += 3
                else:
                    self.open_pre()
            elif top == "code":
                self.close(self.stack.pop())
                self.i += 1
            else:
                self.stack.append(_Open("code", self.out.offset, i))
                self.i += 1
            return
        if ch == "_":
            if two == "__" and top == "underline":
                self.close(self.stack.pop())
                self.i += 2
            elif top == "italic":
                self.close(self.stack.pop())
                self.i += 1
            else:
                kind = "underline" if two == "__" else "italic"
                self.stack.append(_Open(kind, self.out.offset, i))
                self.i += len(two) if kind == "underline" else 1
            return
        if ch in "*~":
            kind = "bold" if ch == "*" else "strikethrough"
            if top == kind:
                self.close(self.stack.pop())
            else:
                self.stack.append(_Open(kind, self.out.offset, i))
            self.i += 1
            return
        if ch == "|" and two == "||":
            if top == "spoiler":
                self.close(self.stack.pop())
            elif (
                self.quote and self.quote.kind == "expandable_blockquote" and src[i + 2 : i + 3] in ("", "\n")
            ):
                pass  # "||" at the end of a line closes an expandable quote: nothing to output
            else:
                self.stack.append(_Open("spoiler", self.out.offset, i))
            self.i += 2
            return
        if ch == "[" or (ch == "!" and two == "!["):
            self.stack.append(_Open("text_link" if ch == "[" else "custom_emoji", self.out.offset, i))
            self.i += 1 if ch == "[" else 2
            return
        if ch == "]" and top in ("text_link", "custom_emoji"):
            self.close_link(self.stack.pop())
            return
        raise self.reserved(ch)

    def open_pre(self) -> None:
        src, start = self.src, self.i
        self.i += 3
        newline = src.find("\n", self.i)
        language = ""
        if newline != -1:
            first_line = src[self.i : newline]
            if first_line == "" or (first_line.strip() and not any(c.isspace() for c in first_line)):
                language = first_line
                self.i = newline + 1
        self.stack.append(_Open("pre", self.out.offset, start, language))

    def close_link(self, opened: _Open) -> None:
        src = self.src
        self.i += 1
        if not src.startswith("(", self.i):
            if opened.kind == "custom_emoji":
                raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
            return  # "[text]" without a URL is kept as plain text
        url = TextBuilder()
        j = self.i + 1
        while j < len(src) and src[j] != ")":
            if src[j] == "\\" and j + 1 < len(src):
                j += 1
            url.add(src[j])
            j += 1
        if j >= len(src):
            raise EntityParseError(f"Can't find end of a url at byte offset {byte_offset(src, self.i)}")
        self.i = j + 1
        target = url.text()
        if opened.kind == "custom_emoji":
            emoji_id = target.removeprefix("tg://emoji?id=")
            if not emoji_id.isdigit():
                raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
            self.close(opened, custom_emoji_id=emoji_id)
        elif target:
            self.close(opened, url=target)


def parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities for a MarkdownV2 message; raises EntityParseError."""
    return _MarkdownV2(src).run()


_LEGACY = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    """The legacy Markdown mode: *bold* _italic_ `code` ```pre``` [text](url), no nesting."""
    out, entities, i = TextBuilder(), [], 0
    while i < len(src):
        ch = src[i]
        if ch == "\\" and src[i + 1 : i + 2] in ("_", "*", "`", "["):
            out.add(src[i + 1])
            i += 2
            continue
        if ch not in "_*`[":
            out.add(ch)
            i += 1
            continue
        begin = i
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {byte_offset(src, begin)}"
                )
            body, language = src[i + 3 : end], ""
            first_line, newline, rest = body.partition("\n")
            if newline and not any(c.isspace() for c in first_line):
                body, language = rest, first_line
            start = out.offset
            out.add(body)
            if out.offset > start:
                entities.append(
                    entity("pre", start, out.offset - start, **({"language": language} if language else {}))
                )
            i = end + 3
            continue
        closer = "]" if ch == "[" else ch
        end = src.find(closer, i + 1)
        if end == -1:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {byte_offset(src, begin)}"
            )
        start = out.offset
        out.add(src[i + 1 : end])
        i = end + 1
        if ch == "[":
            url_end = src.find(")", i) if src.startswith("(", i) else -1
            if url_end != -1:
                url = src[i + 1 : url_end]
                i = url_end + 1
                if out.offset > start and url:
                    entities.append(entity("text_link", start, out.offset - start, url=url))
        elif out.offset > start:
            entities.append(entity(_LEGACY[ch], start, out.offset - start))
    return out.text(), entities

"""parse_mode=HTML exactly as strict as Telegram: only its tags, only its four named entities.

Telegram does not use a forgiving HTML parser: "1 < 2" is an error (an empty tag name), an unknown tag
or a misnested end tag is an error, and "&nbsp;" stays literal text. Error texts and byte offsets follow
the server's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .entities import EntityParseError, TextBuilder, byte_offset, entity

_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_NUMERIC = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_NAMED_RE = re.compile(r"&([a-zA-Z]+);")


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    offset: int = 0  # UTF-16 offset in the output where the tag's content starts


def decode_entity(src: str, i: int) -> tuple[str | None, int]:
    """(character, consumed) for an HTML entity at src[i] == '&', or (None, 0) when it is not one."""
    numeric = _NUMERIC.match(src, i)
    if numeric:
        code = int(numeric.group(1), 16) if numeric.group(1) else int(numeric.group(2))
        if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return chr(code), numeric.end() - i
        return None, 0
    named = _NAMED_RE.match(src, i)
    if named and named.group(1) in _NAMED:
        return _NAMED[named.group(1)], named.end() - i
    return None, 0


class _HtmlParser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.out = TextBuilder()
        self.stack: list[_OpenTag] = []
        self.entities: list[dict[str, Any]] = []

    def fail(self, message: str) -> EntityParseError:
        return EntityParseError(message)

    def at(self, index: int) -> int:
        return byte_offset(self.src, index)

    def peek(self) -> str:
        return self.src[self.i] if self.i < len(self.src) else ""

    def skip_spaces(self) -> None:
        while self.i < len(self.src) and self.src[self.i].isspace():
            self.i += 1

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        src = self.src
        while self.i < len(src):
            ch = src[self.i]
            if ch == "&":
                decoded, used = decode_entity(src, self.i)
                self.out.add(decoded if decoded is not None else "&")
                self.i += used or 1
            elif ch == "<":
                if src.startswith("</", self.i):
                    self.end_tag()
                else:
                    self.start_tag()
            else:
                self.out.add(ch)
                self.i += 1
        if self.stack:
            raise self.fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"')
        return self.out.text(), self.entities

    def start_tag(self) -> None:
        src, begin = self.src, self.i
        self.i += 1
        name_start = self.i
        while self.i < len(src) and not src[self.i].isspace() and src[self.i] != ">":
            self.i += 1
        if self.i >= len(src):
            raise self.fail(f"Unclosed start tag at byte offset {self.at(begin)}")
        name = src[name_start : self.i].lower()
        if name not in _TAG_TYPES:
            raise self.fail(f'Unsupported start tag "{name}" at byte offset {self.at(begin)}')
        attrs = self.attributes(name, begin)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise self.fail(f'Tag "span" must have class "tg-spoiler" at byte offset {self.at(begin)}')
        self.stack.append(_OpenTag(name, attrs, self.out.offset))

    def attributes(self, tag: str, begin: int) -> dict[str, str]:
        src, attrs = self.src, {}
        while True:
            self.skip_spaces()
            if self.i >= len(src):
                raise self.fail(f"Unclosed start tag at byte offset {self.at(begin)}")
            if src[self.i] == ">":
                self.i += 1
                return attrs
            name_start = self.i
            while self.i < len(src) and not src[self.i].isspace() and src[self.i] not in "=>":
                self.i += 1
            name = src[name_start : self.i].lower()
            if not name:
                raise self.fail(
                    f'Empty attribute name in the tag "{tag}" at byte offset {self.at(name_start)}'
                )
            self.skip_spaces()
            if self.peek() != "=":
                if tag == "blockquote" and name == "expandable":
                    attrs[name] = ""
                    continue
                raise self.fail(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                    f"at byte offset {self.at(begin)}"
                )
            self.i += 1
            self.skip_spaces()
            if self.i >= len(src):
                raise self.fail(f"Unclosed start tag at byte offset {self.at(begin)}")
            attrs[name] = self.attribute_value()

    def attribute_value(self) -> str:
        src = self.src
        if src[self.i] in "'\"":
            quote, value_start = src[self.i], self.i
            self.i += 1
            value = TextBuilder()
            while self.i < len(src) and src[self.i] != quote:
                if src[self.i] == "&":
                    decoded, used = decode_entity(src, self.i)
                    value.add(decoded if decoded is not None else "&")
                    self.i += used or 1
                else:
                    value.add(src[self.i])
                    self.i += 1
            if self.i >= len(src):
                raise self.fail(f"Unclosed end tag at byte offset {self.at(value_start)}")
            self.i += 1
            return value.text()
        token_start = self.i
        while self.i < len(src) and (src[self.i].isalnum() or src[self.i] in ".-"):
            self.i += 1
        if self.i >= len(src) or not (src[self.i].isspace() or src[self.i] == ">"):
            raise self.fail(f"Unexpected end of name token at byte offset {self.at(token_start)}")
        return src[token_start : self.i].lower()

    def end_tag(self) -> None:
        src, begin = self.src, self.i
        if not self.stack:
            raise self.fail(f"Unexpected end tag at byte offset {self.at(begin)}")
        self.i += 2
        name_start = self.i
        while self.i < len(src) and not src[self.i].isspace() and src[self.i] != ">":
            self.i += 1
        name = src[name_start : self.i].lower()
        self.skip_spaces()
        if self.peek() != ">":
            raise self.fail(f"Unclosed end tag at byte offset {self.at(begin)}")
        self.i += 1
        opened = self.stack.pop()
        if name and name != opened.name:
            raise self.fail(
                f'Unmatched end tag at byte offset {self.at(begin)}, expected "</{opened.name}>", '
                f'found "</{name}>"'
            )
        length = self.out.offset - opened.offset
        if length > 0:
            made = self.make_entity(opened, length)
            if made:
                self.entities.append(made)

    def make_entity(self, tag: _OpenTag, length: int) -> dict[str, Any] | None:
        kind = _TAG_TYPES[tag.name]
        if kind == "text_link":
            url = tag.attrs.get("href", "").strip()
            return entity(kind, tag.offset, length, url=url) if url else None
        if kind == "custom_emoji":
            emoji_id = tag.attrs.get("emoji-id", "")
            if not emoji_id.isdigit():
                raise self.fail("Invalid custom emoji identifier specified")
            return entity(kind, tag.offset, length, custom_emoji_id=emoji_id)
        if kind == "blockquote" and "expandable" in tag.attrs:
            return entity("expandable_blockquote", tag.offset, length)
        if kind in ("code", "pre"):
            language = tag.attrs.get("class", "")
            if kind == "code" and language.startswith("language-") and len(language) > 9:
                return entity(kind, tag.offset, length, language=language[9:])
            if kind == "pre" and tag.attrs.get("language"):
                return entity(kind, tag.offset, length, language=tag.attrs["language"])
        return entity(kind, tag.offset, length)


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities for an HTML-formatted message; raises EntityParseError."""
    return _HtmlParser(src).run()

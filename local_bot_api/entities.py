"""Message formatting the way the Bot API does it: parse_mode → (text, entities), offsets in UTF-16 units.

Telegram parses the markup, trims surrounding whitespace, then detects commands, mentions, hashtags, URLs
and e-mails in the plain text. Errors use Telegram's wording so the bot meets the same messages it would
meet in production ("can't parse entities: ...").
"""

from __future__ import annotations

import re
from typing import Any

MAX_TEXT = 4096
MAX_CAPTION = 1024

# Characters Telegram trims around a message (after the markup is parsed).
_TRIMMED = " \t\r\n\v\f"


class EntityParseError(ValueError):
    """Markup Telegram would refuse; str(error) is the part after "can't parse entities: "."""


class UnsupportedParseMode(ValueError):
    """parse_mode is none of HTML, MarkdownV2, Markdown."""


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of text[index], as Telegram reports positions in markup errors."""
    return len(text[:index].encode("utf-8", "surrogatepass"))


class TextBuilder:
    """Collects output text while counting its length in UTF-16 code units."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.offset = 0

    def add(self, piece: str) -> None:
        self._parts.append(piece)
        self.offset += utf16_len(piece)

    def text(self) -> str:
        return "".join(self._parts)


def entity(kind: str, offset: int, length: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "offset": offset, "length": length, **extra}


def _utf16_index_map(text: str) -> list[int]:
    """positions[i] = UTF-16 offset of text[i]; one extra entry for the end."""
    positions = [0] * (len(text) + 1)
    acc = 0
    for i, ch in enumerate(text):
        positions[i] = acc
        acc += 2 if ord(ch) > 0xFFFF else 1
    positions[len(text)] = acc
    return positions


def trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped_left = text.lstrip(_TRIMMED)
    shift = utf16_len(text) - utf16_len(stripped_left)
    trimmed = stripped_left.rstrip(_TRIMMED)
    limit = utf16_len(trimmed)
    result = []
    for ent in entities:
        start = max(ent["offset"] - shift, 0)
        end = min(ent["offset"] + ent["length"] - shift, limit)
        if end > start:
            result.append({**ent, "offset": start, "length": end - start})
    return trimmed, result


_DETECTORS: list[tuple[str, re.Pattern[str]]] = [
    ("url", re.compile(r"(?<![\w@/.])https?://[^\s<>\"]+", re.IGNORECASE)),
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("bot_command", re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")),
    ("mention", re.compile(r"(?<![\w@.])@[A-Za-z0-9_]{3,32}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*")),
]
# Detected entities never go inside these (Telegram does not linkify code or an existing link).
_OPAQUE = {"code", "pre", "text_link", "url", "email", "custom_emoji"}


def detect_entities(text: str, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities Telegram finds by itself in plain text: URLs, e-mails, /commands, @mentions, #hashtags."""
    positions = _utf16_index_map(text)
    taken = [(e["offset"], e["offset"] + e["length"]) for e in existing if e["type"] in _OPAQUE]
    found: list[dict[str, Any]] = []
    for kind, pattern in _DETECTORS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind == "url":
                while end > start and text[end - 1] in ".,;:!?)'\"":
                    end -= 1
            begin, finish = positions[start], positions[end]
            if any(begin < b and a < finish for a, b in taken):
                continue
            found.append(entity(kind, begin, finish - begin))
            taken.append((begin, finish))
    return found


def sort_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def normalize_pre_and_code(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """<pre><code class="language-x"> becomes one pre entity with a language; nothing nests inside code."""
    result = list(entities)
    for pre in [e for e in result if e["type"] == "pre"]:
        for code in [e for e in result if e["type"] == "code"]:
            if (code["offset"], code["length"]) == (pre["offset"], pre["length"]):
                if code.get("language") and not pre.get("language"):
                    pre["language"] = code["language"]
                result.remove(code)
    for e in result:
        if e["type"] == "code":
            e.pop("language", None)
    opaque = [(e["offset"], e["offset"] + e["length"]) for e in result if e["type"] in ("code", "pre")]
    return [
        e
        for e in result
        if e["type"] in ("code", "pre")
        or not any(a <= e["offset"] and e["offset"] + e["length"] <= b for a, b in opaque)
    ]


def validate_entities(text: str, raw: Any) -> list[dict[str, Any]]:
    """Entities given explicitly (instead of parse_mode): keep the well-formed ones inside the text."""
    if not isinstance(raw, list):
        raise EntityParseError("entities must be an array")
    limit = utf16_len(text)
    result = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise EntityParseError("entity type is not specified")
        offset, length = item.get("offset"), item.get("length")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length <= 0:
            continue
        length = min(length, limit - offset)
        if length > 0:
            result.append({**item, "offset": offset, "length": length})
    return result

"""parse_mode / entities → what Telegram stores: the text and its entities (UTF-16 offsets)."""

from __future__ import annotations

from typing import Any

from .entities import (
    UnsupportedParseMode,
    detect_entities,
    normalize_pre_and_code,
    sort_entities,
    trim,
    validate_entities,
)
from .html_parser import parse_html
from .markdown import parse_markdown, parse_markdown_v2


def format_text(
    text: str, parse_mode: str | None = None, entities: Any = None
) -> tuple[str, list[dict[str, Any]]]:
    """The text and entities Telegram stores for (text, parse_mode | entities). Raises EntityParseError."""
    if entities is not None:
        parsed_text, parsed = text, validate_entities(text, entities)
    elif not parse_mode:
        parsed_text, parsed = text, []
    else:
        mode = parse_mode.lower()
        if mode == "html":
            parsed_text, parsed = parse_html(text)
        elif mode == "markdownv2":
            parsed_text, parsed = parse_markdown_v2(text)
        elif mode == "markdown":
            parsed_text, parsed = parse_markdown(text)
        else:
            raise UnsupportedParseMode(parse_mode)
    parsed_text, parsed = trim(parsed_text, normalize_pre_and_code(parsed))
    parsed += detect_entities(parsed_text, parsed)
    return parsed_text, sort_entities(parsed)

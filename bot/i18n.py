"""A dict-based translator: no gettext build step, and a missing key fails loudly in tests, not in chats."""

from __future__ import annotations

import html
import math

from bot.locales import TEXTS

DEFAULT_LANGUAGE = "en"


def pick_language(language_code: str | None) -> str:
    """Telegram's language_code ('ru', 'en-US', None) -> one of TEXTS."""
    code = (language_code or "").split("-")[0].lower()
    return code if code in TEXTS else DEFAULT_LANGUAGE


class Translator:
    def __init__(self, language: str = DEFAULT_LANGUAGE):
        self.language = language if language in TEXTS else DEFAULT_LANGUAGE
        self._texts = TEXTS[self.language]

    def __call__(self, key: str, **fields: object) -> str:
        """The text for `key` with fields filled in. Strings are HTML-escaped: texts are Telegram HTML and
        fields often come from users (names) or the model (error messages)."""
        template = self._texts.get(key) or TEXTS[DEFAULT_LANGUAGE][key]
        safe = {k: html.escape(v) if isinstance(v, str) else v for k, v in fields.items()}
        return template.format(**safe)

    def has(self, key: str) -> bool:
        return key in self._texts

    def duration(self, seconds: float) -> str:
        """12 s, 5 min, 2 h 10 min, 3 d: rounded up, so "in 1 min" is never too early."""
        s = max(1, math.ceil(seconds))
        if s < 60:
            return self("unit.s", n=s)
        if s < 3600:
            return self("unit.min", n=math.ceil(s / 60))
        if s < 86400:
            hours, minutes = divmod(math.ceil(s / 60), 60)
            text = self("unit.h", n=hours)
            return f"{text} {self('unit.min', n=minutes)}" if minutes else text
        days, rest = divmod(s, 86400)
        hours = math.ceil(rest / 3600)
        text = self("unit.d", n=days)
        return f"{text} {self('unit.h', n=hours)}" if hours else text

    def limit(self, count: int, window_s: int) -> str:
        """(20, 3600) -> '20/hour' (or '20/час')."""
        window = self._texts.get(f"window.{window_s}")
        return f"{count}/{window}" if window else f"{count}/{self.duration(window_s)}"

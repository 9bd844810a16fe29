"""When a chat answer ends, and what text is safe to stream before it does.

The released model never learned EOS (its training appended none), so an answer ends on the first of:
- the EOS token (models trained by training/ with `prompt_append_eos` do emit it);
- a stop string: the model starting a new turn by itself ("\\nUSER", "\\nUser:", three newlines, ...);
  the stop string and what follows are never shown;
- wrap-up: past `wrap_up` x max_new_tokens, the first sentence end, so the user gets a finished sentence
  rather than a cut one;
- max_new_tokens (finish "length").
Text that might be the beginning of a stop string is held back until it is clear it is not one, so a delta
never has to be taken back.
"""

from __future__ import annotations

SENTENCE_ENDS = (".", "!", "?", "…", "。")


class StopChecker:
    def __init__(self, stop: tuple[str, ...], max_new_tokens: int, wrap_up: float = 0.0):
        self.stop = tuple(s for s in stop if s)
        self.max_new_tokens = max_new_tokens
        self.wrap_up_after = int(max_new_tokens * wrap_up) if 0 < wrap_up < 1 else None
        self.text = ""  # everything decoded so far
        self.emitted = 0  # characters of self.text already streamed
        self.finish: str | None = None

    def _held_back(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:n]):
                    best = n
                    break
        return best

    def feed(self, delta: str, tokens: int, eos: bool = False) -> str:
        """Add newly decoded text after `tokens` generated tokens; returns the text safe to stream now."""
        if self.finish:
            return ""
        start = max(0, len(self.text) - max((len(s) for s in self.stop), default=0))
        self.text += delta
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            self.finish = "stop"
        elif eos:
            self.finish = "stop"
        elif tokens >= self.max_new_tokens:
            self.finish = "length"
        elif (self.wrap_up_after is not None and tokens >= self.wrap_up_after
              and self.text.rstrip().endswith(SENTENCE_ENDS) and delta.strip()):
            self.finish = "stop"
        end = len(self.text) if self.finish else len(self.text) - self._held_back()
        out, self.emitted = self.text[self.emitted:end], max(self.emitted, end)
        return out

    def close(self, reason: str) -> str:
        """End now (cancelled, or the decoder flushed its last characters): stream what is held back."""
        if not self.finish:
            self.finish = reason
        out, self.emitted = self.text[self.emitted:], len(self.text)
        return out

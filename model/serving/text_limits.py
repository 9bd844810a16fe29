"""Text that cannot fit is cut before it is tokenized: a 10 MB message must not cost seconds and gigabytes.

The bound: no token stands for more characters than the longest string in the tokenizer's vocabulary (for a
byte-level BPE a piece has one character per byte, and a text has at most as many characters as bytes; for
SentencePiece with byte fallback, "▁" is one space and "<0xNN>" one byte). So a text of C characters has at
least C / L tokens, and more than L x (token budget) characters can never fit. This holds for tokenizers that
keep every character; one that dropped characters would make us reject text that might have fit, never let
through text that does not.

`bound_text` uses that to make the dialog cheap to tokenize without changing what `encode_dialog` builds from
it: it sees the same turns dropped, the same photo carried forward and the same `too_long` outcome.
"""

from __future__ import annotations

import re

from model.protocol import ProtocolError

_NON_SPACE = re.compile(r"\S")


def max_token_chars(tokenizer) -> int:
    """Longest string any single token stands for (an upper bound, see above)."""
    return max(1, *(len(piece) for piece in tokenizer.get_vocab()))


def _text(message: dict) -> str:
    # exactly what model.dialog tokenizes for a message
    return "\n".join(p["text"] for p in message["content"] if p["type"] == "text").strip()


def _with_text(message: dict, text: str | None) -> dict:
    content = [p for p in message["content"] if p["type"] == "image"]  # images keep their place and count
    return {"role": message["role"], "content": content + ([{"type": "text", "text": text}] if text else [])}


def bound_text(messages: list[dict], max_chars: int) -> list[dict]:
    """Walking from the newest message back, once the characters seen exceed `max_chars` every older message
    is certainly in a turn that will be dropped: keep its images (the newest may be carried forward) and drop
    its text. The message that crosses the line keeps just enough text to stay over it, so `encode_dialog`
    still drops its turn. Raises ProtocolError(too_long) when the current turn (with the system prompt)
    is already over the line."""
    systems = [m for m in messages if m["role"] == "system"]
    used = len(_text(systems[-1])) if systems else 0  # the prompt is part of every dialog's cost
    if used > max_chars:
        raise ProtocolError("too_long", f"the system prompt has {used} characters; at most {max_chars} can fit")
    out = list(messages)
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "system":
            continue
        if used > max_chars:
            out[i] = _with_text(m, None)
            continue
        text = _text(m)
        if used + len(text) <= max_chars:
            used += len(text)
            continue
        if i == len(messages) - 1:  # the turn to answer (parse_job makes it the last message, a user's)
            raise ProtocolError("too_long", f"the message has {len(text)} characters; at most "
                                            f"{max_chars - used} can fit")
        need = max_chars - used + 1
        end = _NON_SPACE.search(text, need - 1).start() + 1  # a cut never ends in spaces that strip() removes
        out[i] = _with_text(m, text[:end])
        used += end
    return out

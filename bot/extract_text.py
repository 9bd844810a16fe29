"""`python -m bot.extract_text --pages N --chars M`: the text of a PDF read from stdin, as one JSON line.

Run by bot/services/documents.py in a process of its own, because a PDF is untrusted input that can take
pypdf minutes or gigabytes (deep object trees, huge compressed streams): a separate process can be killed at
its deadline and is capped in memory and CPU time here, and the bot's event loop never waits on it.

Output: {"text", "pages" (in the file), "read" (pages read), "cut" (text cut at M characters)} or
{"error": "encrypted" | "no_text" | "broken"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys

MEMORY_BYTES = 1 << 30  # a PDF that needs more than 1 GB to read is not worth reading in a chat


def _limit_resources(cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def extract(data: bytes, max_pages: int, max_chars: int) -> dict:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # many "protected" PDFs open with no password
            return {"error": "encrypted"}
        pages = len(reader.pages)
        texts, size, read = [], 0, 0
        for page in reader.pages[:max_pages]:
            text = (page.extract_text() or "").strip()
            read += 1
            if text:
                texts.append(text)
                size += len(text) + 2
            if size > max_chars:
                break
    except PdfReadError:
        return {"error": "broken"}
    except Exception as exc:  # pypdf raises many kinds on malformed files; any of them means "cannot read"
        if "crypt" in str(exc).lower():  # an unsupported encryption algorithm
            return {"error": "encrypted"}
        return {"error": "broken"}
    text = "\n\n".join(texts)
    if not text.strip():
        return {"error": "no_text", "pages": pages}
    return {"text": text[:max_chars], "pages": pages, "read": read, "cut": len(text) > max_chars}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument("--chars", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, default=60)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # pypdf warns about every oddity on stderr; the answer is the JSON
    _limit_resources(args.cpu_s)
    try:
        result = extract(sys.stdin.buffer.read(), args.pages, args.chars)
    except MemoryError:
        result = {"error": "broken"}
    sys.stdout.write(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

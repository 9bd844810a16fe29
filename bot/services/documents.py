"""Documents users send: text files (.txt, .md, .csv, .json, source code) and PDFs become text in the turn.

Bounded three ways, because a document is untrusted and the model's context is small: pages (PDFs: at most
DOCUMENT_MAX_PAGES are read), characters (what the turn has room for) and time (a PDF is read by
`python -m bot.extract_text` in a process of its own, capped in memory, killed at DOCUMENT_TIMEOUT_S). At most
two documents are read at once, so a flood of PDFs cannot take the machine. What was left out is said, to the
user and to the model.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import PurePath

from aiogram.types import Message

from bot.services.downloads import Downloader, TurnProblem, too_large
from bot.settings import Settings

log = logging.getLogger(__name__)

TEXT_ENDINGS = frozenset(
    ".txt .text .md .markdown .rst .csv .tsv .json .jsonl .xml .yaml .yml .toml .ini .cfg .conf .env .log .tex "
    ".py .ipynb .js .mjs .ts .tsx .jsx .java .kt .scala .c .h .cc .cpp .hpp .cs .go .rs .rb .php .swift .m .r "
    ".sh .bash .zsh .ps1 .bat .sql .html .htm .css .scss .vue .lua .pl .dart .hs .ex .exs .erl .clj .el .proto "
    ".gradle .dockerfile .makefile".split()
)
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license", "cmakelists.txt"})
TEXT_MIME_TYPES = frozenset(
    {"application/json", "application/xml", "application/x-yaml", "application/yaml", "application/javascript",
     "application/x-sh", "application/sql", "application/toml", "application/x-python"}
)
PDF_MIME = "application/pdf"
PARALLEL_READS = 2


@dataclass
class DocumentRef:
    file_id: str
    file_size: int | None
    file_name: str
    kind: str  # "pdf" | "text"


@dataclass
class DocumentText:
    name: str
    text: str
    pages: int | None = None  # a PDF's page count
    pages_read: int | None = None
    cut: bool = False  # the text was cut at the character bound

    @property
    def truncated(self) -> bool:
        return self.cut or (self.pages is not None and self.pages_read is not None and self.pages_read < self.pages)


def document_kind(message: Message) -> str | None:
    """"pdf", "text", or None for a document that is neither."""
    document = message.document
    name, mime_type = (document.file_name or "").lower(), (document.mime_type or "").lower()
    suffix = PurePath(name).suffix
    if mime_type == PDF_MIME or suffix == ".pdf":
        return "pdf"
    if suffix in TEXT_ENDINGS or name in TEXT_NAMES or mime_type.startswith("text/") or mime_type in TEXT_MIME_TYPES:
        return "text"
    return None


def decode_text(data: bytes, max_chars: int) -> tuple[str, bool]:
    """(text, cut). UTF-8 (a BOM, UTF-16 with a BOM), else Windows-1251, which Russian files often are.
    A file with NUL bytes in it is binary, whatever its name says."""
    cut = len(data) > 4 * max_chars + 4  # no character takes more than 4 bytes in UTF-8
    head = data[: 4 * max_chars + 4]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head.decode("utf-16", errors="replace")
    else:
        if b"\x00" in head:
            raise TurnProblem("unsupported.file")
        try:
            # a cut may fall inside a character: only the last few bytes may be incomplete
            text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=not cut)
        except UnicodeDecodeError:
            text = head.decode("cp1251", errors="replace")
    cut = cut or len(text) > max_chars
    return text[:max_chars], cut


class DocumentReader:
    def __init__(self, settings: Settings, downloader: Downloader):
        self.settings = settings
        self.downloader = downloader
        self._slots = asyncio.Semaphore(PARALLEL_READS)

    def reference(self, message: Message) -> DocumentRef | None:
        """None for a file that is not a document we read (checked before anything is downloaded)."""
        kind = document_kind(message)
        if kind is None:
            return None
        document = message.document
        if (document.file_size or 0) > self.settings.max_file_bytes:
            raise too_large(document.file_size, self.settings.max_file_bytes)
        return DocumentRef(document.file_id, document.file_size, document.file_name or f"file.{kind}", kind)

    async def read(self, chat_id: int, ref: DocumentRef, max_chars: int) -> DocumentText:
        data = await self.downloader.download(chat_id, ref.file_id)
        if ref.kind == "text":
            text, cut = await asyncio.to_thread(decode_text, data, max_chars)
            if not text.strip():
                raise TurnProblem("document.empty", name=ref.file_name)
            return DocumentText(ref.file_name, text, cut=cut)
        result = await self._read_pdf(data, max_chars, ref.file_name)
        problem = result.get("error")
        if problem:
            raise TurnProblem(f"document.{problem}", name=ref.file_name)
        return DocumentText(ref.file_name, result["text"], result["pages"], result["read"], result["cut"])

    async def _read_pdf(self, data: bytes, max_chars: int, name: str) -> dict:
        timeout = self.settings.document_timeout_s
        args = ["--pages", str(self.settings.document_max_pages), "--chars", str(max_chars)]
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.extract_text", *args, "--cpu-s", str(int(timeout) + 1),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(timeout):
                    out, _ = await process.communicate(data)
            except TimeoutError:
                process.kill()
                await process.wait()
                log.info("a PDF took longer than %.0f s to read", timeout)
                raise TurnProblem("document.too_slow", name=name, seconds=f"{timeout:g}") from None
        try:
            return json.loads(out)
        except ValueError:  # killed for memory or CPU time, or crashed
            log.info("reading a PDF failed (exit status %s)", process.returncode)
            return {"error": "broken"}

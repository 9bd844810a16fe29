"""Files the server holds: uploaded bytes under Telegram-looking ids, served at /file/bot<token>/<path>."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses bigger files, like api.telegram.org


@dataclass
class FileRecord:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes | None  # None: a file known only by its size (to test size limits cheaply)
    size: int
    mime_type: str | None = None
    file_name: str | None = None
    media: Any = (
        None  # the object a message carries for it (PhotoSize list, Document...), to resend by file_id
    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.size <= MAX_DOWNLOAD:
            data["file_path"] = self.file_path
        return data


class FileStore:
    """Uploaded bytes under Telegram-looking ids; file_path is what /file/bot<token>/<path> serves."""

    def __init__(self) -> None:
        self._by_id: dict[str, FileRecord] = {}
        self._by_path: dict[str, FileRecord] = {}
        self._counter = 0

    def add(
        self,
        data: bytes | None,
        folder: str,
        extension: str,
        *,
        mime_type: str | None = None,
        file_name: str | None = None,
        size: int | None = None,
    ) -> FileRecord:
        self._counter += 1
        record = FileRecord(
            file_id=_telegram_id(folder, 64),
            file_unique_id=_telegram_id(folder, 16),
            file_path=f"{folder}/file_{self._counter}.{extension}",
            data=data,
            size=size if size is not None else len(data or b""),
            mime_type=mime_type,
            file_name=file_name,
        )
        self._by_id[record.file_id] = record
        self._by_path[record.file_path] = record
        return record

    def get(self, file_id: str) -> FileRecord | None:
        return self._by_id.get(file_id)

    def by_path(self, path: str) -> FileRecord | None:
        return self._by_path.get(path)

    def records(self) -> list[FileRecord]:
        return list(self._by_id.values())

    def put(self, record: FileRecord) -> None:
        """A record restored from a saved state; new files are numbered after it."""
        self._by_id[record.file_id] = record
        self._by_path[record.file_path] = record
        number = re.search(r"file_(\d+)\.", record.file_path)
        self._counter = max(self._counter, int(number.group(1)) if number else 0)


_PREFIXES = {"photos": "AgAC", "documents": "BQAC", "stickers": "CAAC", "voice": "AwAC", "videos": "BAAC"}


def _telegram_id(folder: str, length: int) -> str:
    """A random id shaped like Telegram's (the prefix hints at the kind, as real ones do)."""
    return (_PREFIXES.get(folder, "AQAD") + secrets.token_urlsafe(length))[:length]

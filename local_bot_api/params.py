"""Method parameters from any body Telegram accepts: query string, JSON, urlencoded or multipart form.

aiogram's AiohttpSession posts a form: strings as they are, numbers and booleans JSON-encoded ("42",
"true"), objects (reply_markup, entities, scope...) as JSON text, and files as multipart parts referred
to by "attach://<name>". JSON bodies carry real types. The getters below accept both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .errors import bad_request


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


class Params:
    def __init__(self, values: dict[str, Any], files: dict[str, Upload] | None = None) -> None:
        self.values = values
        self.files = files or {}

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "") or name in self.files

    def str(self, name: str, *, required: bool = False, empty: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(empty or f"{name} is empty")
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def int(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return default
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def float(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            if not value:
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value

    def chat_id(self, name: str = "chat_id") -> int | str:
        value = self.values.get(name)
        if value is None or value == "":
            raise bad_request(f"{name} is empty")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            if text.startswith("@"):
                return text
            raise bad_request("chat not found") from None

    def input_file(self, name: str) -> Upload | str | None:
        """An uploaded file, or a string (file_id or URL), or None when the parameter is absent."""
        if name in self.files:
            return self.files[name]
        value = self.values.get(name)
        if not value:
            return None
        if isinstance(value, str) and value.startswith("attach://"):
            part = self.files.get(value.removeprefix("attach://"))
            if part is None:
                raise bad_request(f"file for {name} was not found in the request")
            return part
        return str(value)


async def read_request(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, Upload] = {}
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON request body") from None
            if isinstance(body, dict):
                values.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = Upload(value.filename, value.content_type, value.file.read())
                else:
                    values[key] = value
    return Params(values, files)


async def read_multipart(reader: aiohttp.MultipartReader) -> Params:
    """A multipart body read from a client response (a webhook answering with a method call)."""
    values: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    while True:
        part = await reader.next()
        if part is None:
            return Params(values, files)
        if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
            continue
        data = await part.read()
        if part.filename:
            files[part.name] = Upload(part.filename, part.headers.get("Content-Type", ""), bytes(data))
        else:
            values[part.name] = data.decode("utf-8")

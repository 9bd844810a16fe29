"""The playground page's server side: its files, and what the page shows besides the chat (a one-line banner,
a tray of sample pictures to send). Both are data given by whoever runs the server (local_bot_api.demo)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from .errors import ControlError

if TYPE_CHECKING:
    from .server import LocalBotAPI

PAGE_DIR = Path(__file__).parent
# Served from the package folder: the page and its modules (no build step, no CDN).
_ASSET = r"{asset:playground(?:_[a-z]+)?\.(?:js|css)}"
_SAMPLE_NAME = re.compile(r"^[\w .-]{1,64}$")
MAX_SAMPLES = 24


@dataclass
class Sample:
    """A picture the user can send with one click: PNG/JPEG bytes and the caption that goes with it."""

    name: str
    data: bytes
    caption: str = ""

    @classmethod
    def of(cls, item: Any) -> Sample:
        """From a Sample, a (name, bytes, caption) tuple, or JSON {"name", "caption", "data_base64"}."""
        if isinstance(item, Sample):
            sample = item
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            sample = cls(str(item[0]), bytes(item[1]), str(item[2]) if len(item) == 3 else "")
        elif isinstance(item, dict) and "name" in item and ("data" in item or "data_base64" in item):
            data = item.get("data") or base64.b64decode(item["data_base64"])
            sample = cls(str(item["name"]), bytes(data), str(item.get("caption") or ""))
        else:
            raise ControlError('a sample is (name, bytes, caption) or {"name", "caption", "data_base64"}')
        if not _SAMPLE_NAME.match(sample.name):
            raise ControlError(f"sample name {sample.name!r}: 1-64 letters, digits, spaces, '.', '-', '_'")
        try:
            Image.open(BytesIO(sample.data)).verify()
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ControlError(f"sample {sample.name!r} is not an image") from error
        return sample


class Playground:
    def __init__(self) -> None:
        self.banner = ""
        self.samples: dict[str, Sample] = {}

    def configure(self, banner: str | None = None, samples: list[Any] | None = None) -> None:
        if banner is not None:
            self.banner = " ".join(banner.split())[:300]  # one line
        if samples is not None:
            if len(samples) > MAX_SAMPLES:
                raise ControlError(f"at most {MAX_SAMPLES} sample pictures")
            parsed = [Sample.of(item) for item in samples]
            self.samples = {sample.name: sample for sample in parsed}

    def sample(self, name: str) -> Sample | None:
        return self.samples.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "banner": self.banner,
            "samples": [
                {"name": s.name, "caption": s.caption, "url": f"/_control/samples/{s.name}"}
                for s in self.samples.values()
            ],
        }


class PlaygroundControl:
    """Mixed into LocalBotAPI: `set_playground` is also POST /_control/set_playground."""

    def set_playground(
        self: LocalBotAPI, banner: str | None = None, samples: list[Any] | None = None
    ) -> dict[str, Any]:
        """The page's banner line and sample-picture tray; None leaves that part as it is."""
        self.playground.configure(banner, samples)
        self.events.publish({"type": "playground", "bot_id": self.bot().me.id, "chat_id": None})
        return self.playground.to_json()


def setup_page_routes(app: web.Application, api: LocalBotAPI) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / "playground.html")

    async def asset(request: web.Request) -> web.StreamResponse:
        path = PAGE_DIR / request.match_info["asset"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def settings(request: web.Request) -> web.Response:
        return web.json_response(api.playground.to_json())

    async def sample(request: web.Request) -> web.Response:
        found = api.playground.sample(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        kind = Image.open(BytesIO(found.data)).get_format_mimetype() or "application/octet-stream"
        return web.Response(body=found.data, content_type=kind)

    app.router.add_get("/", page)
    app.router.add_get("/playground", page)
    app.router.add_get(f"/{_ASSET}", asset)
    app.router.add_get("/favicon.ico", no_content)
    app.router.add_get("/_control/playground", settings)
    app.router.add_get("/_control/samples/{name}", sample)

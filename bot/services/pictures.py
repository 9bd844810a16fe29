"""Pictures users send: which file to take, and how it becomes an image key in Redis.

The bot downloads files itself (their URLs contain the token and never leave the bot), checks that they
decode within our limits before anything is queued (so a bad file gets an immediate, clear reply instead of
a worker error later), and stores the bytes once by content hash, as the wire protocol says.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiogram.types import Message
from PIL import Image

from bot.services.dialogs import DialogStore
from bot.services.downloads import Downloader, TurnProblem, too_large
from bot.settings import Settings
from model.images import ImageError, ImageLimits, load_image

log = logging.getLogger(__name__)

def _readable(formats: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """MIME types and file name endings of the formats `load_image` decodes, from Pillow's own registry (so
    they follow model/images.py's list). Pictures sent "as a file" often come without a MIME type: the name
    is the next best hint."""
    Image.init()
    mime_types = frozenset(Image.MIME[f] for f in formats if f in Image.MIME) | {"image/jpg"}  # a common alias
    endings = tuple(sorted(ext for ext, f in Image.registered_extensions().items() if f in formats))
    return mime_types, endings


READABLE_MIME_TYPES, READABLE_ENDINGS = _readable(ImageLimits().formats)


@dataclass
class ImageRef:
    file_id: str
    file_size: int | None


def is_picture_document(message: Message) -> bool:
    """A document we decode as a picture (by MIME type, else by its name)."""
    document = message.document
    name, mime_type = (document.file_name or "").lower(), (document.mime_type or "").lower()
    return mime_type in READABLE_MIME_TYPES or name.endswith(READABLE_ENDINGS)


class PictureFetcher:
    def __init__(self, settings: Settings, dialogs: DialogStore, downloader: Downloader):
        self.settings = settings
        self.dialogs = dialogs
        self.downloader = downloader
        self.limits = ImageLimits(max_bytes=settings.max_file_bytes, max_pixels=settings.max_image_pixels)

    def from_photo(self, message: Message) -> ImageRef:
        """The largest size within our limits (Telegram sends several, smallest first)."""
        fitting = [
            size
            for size in message.photo
            if (size.file_size or 0) <= self.settings.max_file_bytes
            and size.width * size.height <= self.settings.max_image_pixels
        ]
        if not fitting:
            raise self._too_large(max(size.file_size or 0 for size in message.photo))
        best = max(fitting, key=lambda size: size.width * size.height)
        return ImageRef(best.file_id, best.file_size)

    def from_document(self, message: Message) -> ImageRef:
        document = message.document
        name, mime_type = (document.file_name or "").lower(), (document.mime_type or "").lower()
        if not is_picture_document(message):
            # a picture we do not decode (TIFF, AVIF, HEIC...) is told so at once, without downloading it
            known = Image.registered_extensions().get(Path(name).suffix)  # Pillow also names formats it only writes
            picture = mime_type.startswith("image/") or known in Image.OPEN
            raise TurnProblem("image.unsupported_image" if picture else "unsupported.file")
        if (document.file_size or 0) > self.settings.max_file_bytes:
            raise self._too_large(document.file_size)
        return ImageRef(document.file_id, document.file_size)

    async def fetch(self, chat_id: int, image: ImageRef, sender: int) -> str:
        """Download, check that it decodes within our limits, store once by hash (as sent by `sender`).
        Returns its image key."""
        data = await self.downloader.download(chat_id, image.file_id)
        try:
            await asyncio.to_thread(load_image, data, self.limits)  # decoding is CPU work: off the loop
        except ImageError as exc:
            log.info("image refused: %s", exc)
            raise TurnProblem(f"image.{exc.code}") from exc
        return await self.dialogs.store_image(data, sender)

    def _too_large(self, size: int | None) -> TurnProblem:
        return too_large(size, self.settings.max_file_bytes)

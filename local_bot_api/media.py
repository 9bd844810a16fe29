"""Media objects as Telegram builds them: a photo becomes several PhotoSize entries (scaled copies plus
the full size), documents, stickers, voice notes and videos carry their file ids, sizes and types."""

from __future__ import annotations

import mimetypes
from io import BytesIO
from typing import Any

import aiohttp
from PIL import Image, UnidentifiedImageError

from .errors import bad_request
from .files import FileRecord, FileStore
from .params import Params, Upload

THUMBNAIL_SIDES = (90, 320, 800, 1280)  # Telegram's s/m/x/y sizes
MAX_PHOTO_SIDE = 2560
_FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


class MediaError(ValueError):
    """Bytes that cannot be what they claim to be (e.g. a photo Pillow cannot open)."""


def _open_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError("IMAGE_PROCESS_FAILED") from error
    return image


def _jpeg(image: Image.Image, max_side: int) -> tuple[bytes, int, int]:
    scaled = image.convert("RGB")
    scaled.thumbnail((max_side, max_side))
    buffer = BytesIO()
    scaled.save(buffer, "JPEG", quality=87)
    return buffer.getvalue(), scaled.width, scaled.height


def _size_json(record: FileRecord, width: int, height: int) -> dict[str, Any]:
    return {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "file_size": record.size,
        "width": width,
        "height": height,
    }


def photo_sizes(files: FileStore, data: bytes) -> list[dict[str, Any]]:
    """PhotoSize list, smallest first; the last entry keeps the original bytes when they fit 2560 px."""
    image = _open_image(data)
    width, height = image.size
    sizes: list[dict[str, Any]] = []
    for side in THUMBNAIL_SIDES:
        if max(width, height) <= side:
            break
        jpeg, w, h = _jpeg(image, side)
        sizes.append(_size_json(files.add(jpeg, "photos", "jpg", mime_type="image/jpeg"), w, h))
    if max(width, height) <= MAX_PHOTO_SIDE:
        extension = _FORMAT_EXTENSIONS.get(image.format or "", "jpg")
        full = files.add(
            data, "photos", extension, mime_type=Image.MIME.get(image.format or "", "image/jpeg")
        )
        sizes.append(_size_json(full, width, height))
    else:
        jpeg, w, h = _jpeg(image, MAX_PHOTO_SIDE)
        sizes.append(_size_json(files.add(jpeg, "photos", "jpg", mime_type="image/jpeg"), w, h))
    for size in sizes:
        record = files.get(size["file_id"])
        if record is not None:
            record.media = sizes
    return sizes


def _thumbnail(files: FileStore, data: bytes | None) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        image = _open_image(data)
    except MediaError:
        return None
    jpeg, w, h = _jpeg(image, 320)
    return _size_json(files.add(jpeg, "thumbnails", "jpg", mime_type="image/jpeg"), w, h)


def document(
    files: FileStore,
    data: bytes | None,
    file_name: str,
    mime_type: str | None = None,
    file_size: int | None = None,
) -> dict[str, Any]:
    mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else "bin"
    record = files.add(data, "documents", extension, mime_type=mime_type, file_name=file_name, size=file_size)
    doc: dict[str, Any] = {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "file_name": file_name,
        "mime_type": mime_type,
        "file_size": record.size,
    }
    if mime_type.startswith("image/") and (thumb := _thumbnail(files, data)):
        doc["thumbnail"] = thumb
    record.media = doc
    return doc


def sticker(files: FileStore, emoji: str = "🙂") -> dict[str, Any]:
    buffer = BytesIO()
    Image.new("RGBA", (512, 512), (255, 200, 0, 255)).save(buffer, "WEBP")
    record = files.add(buffer.getvalue(), "stickers", "webp", mime_type="image/webp")
    record.media = {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": emoji,
        "file_size": record.size,
    }
    return record.media


def voice(files: FileStore, data: bytes | None = None, duration: int = 2) -> dict[str, Any]:
    record = files.add(data or b"OggS" + bytes(2000), "voice", "oga", mime_type="audio/ogg")
    record.media = {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "duration": duration,
        "mime_type": "audio/ogg",
        "file_size": record.size,
    }
    return record.media


def video(
    files: FileStore, data: bytes | None = None, duration: int = 3, width: int = 640, height: int = 360
) -> dict[str, Any]:
    record = files.add(data or bytes(8000), "videos", "mp4", mime_type="video/mp4")
    record.media = {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "width": width,
        "height": height,
        "duration": duration,
        "mime_type": "video/mp4",
        "file_size": record.size,
    }
    return record.media


async def _file_bytes(http: aiohttp.ClientSession, source: Upload | str) -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of an uploaded part or an http(s) URL."""
    if isinstance(source, Upload):
        return source.data, source.filename, source.content_type
    try:
        async with http.get(source, timeout=aiohttp.ClientTimeout(total=20)) as response:
            response.raise_for_status()
            name = source.rsplit("/", 1)[-1].split("?")[0] or "file"
            return await response.read(), name, response.content_type
    except (aiohttp.ClientError, TimeoutError):
        raise bad_request("failed to get HTTP URL content") from None


async def from_params(files: FileStore, http: aiohttp.ClientSession, p: Params, field: str) -> Any:
    """The media object for a send method's file parameter: a new upload, a URL, or a known file_id."""
    source = p.input_file(field)
    if source is None:
        raise bad_request(f"there is no {field} in the request")
    if isinstance(source, str) and not source.startswith(("http://", "https://")):
        record = files.get(source)
        expected = list if field == "photo" else dict
        if record is None or not isinstance(record.media, expected):
            raise bad_request("wrong file identifier/HTTP URL specified")
        return record.media
    data, name, content_type = await _file_bytes(http, source)
    if field == "photo":
        try:
            return photo_sizes(files, data)
        except MediaError:
            raise bad_request("IMAGE_PROCESS_FAILED") from None
    return document(files, data, name, None if content_type == "application/octet-stream" else content_type)

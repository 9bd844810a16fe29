"""The control API, media side: a user sends photos, albums, documents, stickers, voice notes, videos and
the playground's sample pictures. Mixed into LocalBotAPI next to Control (control.py)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from . import media
from .entities import detect_entities, sort_entities
from .errors import ControlError
from .state import StoredMessage

if TYPE_CHECKING:
    from .server import LocalBotAPI


class MediaControl:
    """Needs from its host: files, playground, and Control's _post."""

    def _with_caption(self: LocalBotAPI, content: dict[str, Any], caption: str | None) -> dict[str, Any]:
        if caption:
            content["caption"] = caption
            if entities := sort_entities(detect_entities(caption, [])):
                content["caption_entities"] = entities
        return content

    async def send_photo(
        self: LocalBotAPI,
        user_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        chat_id: int | None = None,
        reply_to: int | None = None,
        media_group_id: str | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """A compressed photo: several PhotoSize entries (scaled copies and the full size)."""
        try:
            content: dict[str, Any] = {"photo": media.photo_sizes(self.files, data)}
        except media.MediaError as error:
            raise ControlError("not an image Telegram could send as a photo") from error
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._post(user_id, self._with_caption(content, caption), chat_id, reply_to, token)

    async def send_album(
        self: LocalBotAPI,
        user_id: int,
        photos: list[bytes],
        *,
        caption: str | None = None,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> list[StoredMessage]:
        """2–10 photos sharing a media_group_id, one message (and one update) each; caption on the first."""
        if not 2 <= len(photos) <= 10:
            raise ControlError("an album has 2 to 10 items")
        group_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        return [
            await self.send_photo(
                user_id,
                data,
                caption=caption if i == 0 else None,
                chat_id=chat_id,
                media_group_id=group_id,
                token=token,
            )
            for i, data in enumerate(photos)
        ]

    async def send_document(
        self: LocalBotAPI,
        user_id: int,
        data: bytes | None,
        *,
        file_name: str = "file.bin",
        mime_type: str | None = None,
        file_size: int | None = None,
        caption: str | None = None,
        chat_id: int | None = None,
        reply_to: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """Any file sent "as a file" (PDF, .txt, .py...), with its name and MIME type (guessed from the name
        when not given). file_size without data fakes a big file cheaply (getFile refuses > 20 MB)."""
        content = {"document": media.document(self.files, data, file_name, mime_type, file_size)}
        return self._post(user_id, self._with_caption(content, caption), chat_id, reply_to, token)

    async def send_sticker(
        self: LocalBotAPI,
        user_id: int,
        *,
        emoji: str = "🙂",
        chat_id: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        return self._post(user_id, {"sticker": media.sticker(self.files, emoji)}, chat_id, None, token)

    async def send_voice(
        self: LocalBotAPI,
        user_id: int,
        data: bytes | None = None,
        *,
        duration: int = 2,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        return self._post(user_id, {"voice": media.voice(self.files, data, duration)}, chat_id, None, token)

    async def send_video(
        self: LocalBotAPI,
        user_id: int,
        data: bytes | None = None,
        *,
        duration: int = 3,
        caption: str | None = None,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        content = self._with_caption({"video": media.video(self.files, data, duration)}, caption)
        return self._post(user_id, content, chat_id, None, token)

    async def send_sample(
        self: LocalBotAPI,
        user_id: int,
        name: str,
        *,
        caption: str | None = None,
        chat_id: int | None = None,
        reply_to: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """One of the playground's sample pictures as a photo, with its caption unless another is given."""
        sample = self.playground.sample(name)
        if sample is None:
            raise ControlError(f"no sample picture {name!r}")
        return await self.send_photo(
            user_id,
            sample.data,
            caption=sample.caption if caption is None else caption,
            chat_id=chat_id,
            reply_to=reply_to,
            token=token,
        )

"""Albums arrive as separate updates sharing `media_group_id`. Hold the first one until no more items came
for `wait_s`, then call the handler once with all of them in data["album"]; the other updates end here.

Assumes one bot process receives all of an album's updates, which polling and a single webhook give."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject


class AlbumMiddleware(BaseMiddleware):
    def __init__(self, wait_s: float):
        self.wait_s = wait_s
        self._albums: dict[tuple[int, str], list[Message]] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Message) or not event.media_group_id:
            return await handler(event, data)
        key = (event.chat.id, event.media_group_id)
        if (album := self._albums.get(key)) is not None:
            album.append(event)
            return None
        self._albums[key] = album = [event]
        try:
            seen = 0
            while seen != len(album):  # wait until the album stops growing
                seen = len(album)
                await asyncio.sleep(self.wait_s)
        finally:
            del self._albums[key]
        album.sort(key=lambda message: message.message_id)
        data["album"] = album
        return await handler(album[0], data)

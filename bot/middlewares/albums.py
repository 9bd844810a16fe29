"""Messages that Telegram delivers as several updates but that are one turn, gathered into one call of the
handler with all of them in data["album"]; the other updates end here.

- An album: items share `media_group_id`; held until no more came for `wait_s`.
- A long paste: Telegram clients split text over 4096 characters into several messages sent at once. A text
  message at least `min_chars` long (a split part is close to 4096) is held until the same sender wrote
  nothing more in that chat for `wait_s`; what came meanwhile is the rest of the paste. A short message is
  never held, so ordinary chatting costs no delay.

Assumes one bot process receives all of a turn's updates, which polling and a single webhook give."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject

from bot.formatting import utf16_len
from bot.identity import sender_id


class _Gathering(BaseMiddleware):
    def __init__(self, wait_s: float):
        self.wait_s = wait_s
        self._groups: dict[Hashable, list[Message]] = {}

    @abstractmethod
    def key(self, message: Message) -> Hashable | None:
        """The group a message may belong to (None: never gathered)."""

    def starts(self, message: Message) -> bool:
        """Whether this message opens a group when none is open."""
        return True

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        key = self.key(event) if isinstance(event, Message) else None
        if key is None:
            return await handler(event, data)
        if (group := self._groups.get(key)) is not None:
            group.append(event)
            return None
        if not self.starts(event):
            return await handler(event, data)
        self._groups[key] = group = [event]
        try:
            seen = 0
            while seen != len(group):  # wait until the group stops growing
                seen = len(group)
                await asyncio.sleep(self.wait_s)
        finally:
            del self._groups[key]
        group.sort(key=lambda message: message.message_id)
        data["album"] = group
        return await handler(group[0], data)


class AlbumMiddleware(_Gathering):
    def key(self, message: Message) -> Hashable | None:
        return (message.chat.id, message.media_group_id) if message.media_group_id else None


class PasteMiddleware(_Gathering):
    def __init__(self, wait_s: float, min_chars: int):
        super().__init__(wait_s)
        self.min_chars = min_chars

    def key(self, message: Message) -> Hashable | None:
        if message.text is None or message.text.startswith("/") or message.from_user is None:
            return None
        return message.chat.id, sender_id(message)

    def starts(self, message: Message) -> bool:
        return utf16_len(message.text) >= self.min_chars

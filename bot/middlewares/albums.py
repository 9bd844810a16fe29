"""Messages that Telegram delivers as several updates but that are one turn, gathered into one call of the
handler with all of them in data["album"]; the other updates end here.

- An album: items share `media_group_id`; held until no more came for `wait_s`.
- A long paste: Telegram clients split text over 4096 characters into several messages sent at once. A text
  message at least `min_chars` long (a split part is close to 4096) is held until the same sender wrote
  nothing more in that chat for `wait_s`; what came meanwhile is the rest of the paste. A short message is
  never held, so ordinary chatting costs no delay.

  Updates are handled concurrently, and a part can overtake an earlier one on the way here: the middlewares
  before this one wait on Redis. Measured in tests/test_bot_chat.py under load: the paste's short tail got here
  first, was answered as a turn of its own, and the paste came after it. So `PasteMiddleware.door` (an outer
  middleware on the dispatcher's updates, registered before any that awaits) notes each long text as it arrives,
  in the order Telegram sent it; a short message that finds an earlier long one from the same sender still on
  its way waits for it, for `wait_s` at most, and joins its group.

Assumes one bot process receives all of a turn's updates, which polling and a single webhook give."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject, Update

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

    async def wait_for_earlier(self, key: Hashable, message: Message) -> None:
        """Before a message that opens no group is handled alone: wait for earlier ones that may open one."""

    async def arrived(self, key: Hashable, message: Message) -> None:
        """A message that opens or joins a group got here."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        key = self.key(event) if isinstance(event, Message) else None
        if key is None:
            return await handler(event, data)
        if key not in self._groups and not self.starts(event):
            await self.wait_for_earlier(key, event)
        if (group := self._groups.get(key)) is not None:
            group.append(event)
            await self.arrived(key, event)
            return None
        if not self.starts(event):
            return await handler(event, data)
        self._groups[key] = group = [event]
        await self.arrived(key, event)
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
        self._on_the_way: dict[Hashable, set[int]] = {}  # long texts past the door, not here yet
        self._moved = asyncio.Condition()  # a long text got here, or its update ended elsewhere

    async def door(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        """The dispatcher's first outer middleware on updates: it runs for each update in the order they came,
        before anything awaits."""
        message = event.message if isinstance(event, Update) else None
        key = self.key(message) if message is not None else None
        if key is None or not self.starts(message):
            return await handler(event, data)
        self._on_the_way.setdefault(key, set()).add(message.message_id)
        try:
            return await handler(event, data)
        finally:  # also when the update ended before it got here (another router took it, a ban)
            await self.arrived(key, message)

    async def wait_for_earlier(self, key: Hashable, message: Message) -> None:
        def settled() -> bool:
            earlier = any(i < message.message_id for i in self._on_the_way.get(key, ()))
            return key in self._groups or not earlier

        async with self._moved:
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._moved.wait_for(settled)
            except TimeoutError:
                pass  # the earlier part is stuck somewhere: this one is not held longer than a paste would be

    async def arrived(self, key: Hashable, message: Message) -> None:
        if (way := self._on_the_way.get(key)) is not None:
            way.discard(message.message_id)
            if not way:
                del self._on_the_way[key]
        async with self._moved:
            self._moved.notify_all()

    def key(self, message: Message) -> Hashable | None:
        if message.text is None or message.text.startswith("/") or message.from_user is None:
            return None
        return message.chat.id, sender_id(message)

    def starts(self, message: Message) -> bool:
        return utf16_len(message.text) >= self.min_chars

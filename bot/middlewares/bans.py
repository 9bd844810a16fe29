"""Banned users get nothing but a short notice (at most once an hour). Admins cannot be locked out.

The turn itself is checked again atomically in AccessControl.admit; this middleware keeps banned users away
from commands too, and stops their updates before any other work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject

from bot.identity import sender_id
from bot.services.access import AccessControl
from bot.services.outbox import Outbox


class BanMiddleware(BaseMiddleware):
    def __init__(self, access: AccessControl, outbox: Outbox):
        self.access = access
        self.outbox = outbox

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Message):
            return await handler(event, data)
        sender = sender_id(event)  # a channel posting in a group is banned by its own id
        if self.access.is_admin(sender) or not await self.access.is_banned(sender):
            return await handler(event, data)
        data["metrics"].refusals.labels(reason="banned").inc()
        if event.chat.type == "private" and await self.access.should_tell_banned(sender):
            await self.outbox.reply(event, data["t"]("banned"))
        return None

"""Counts every update by kind and logs it in one line with the user id hashed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from bot.observability import BotMetrics, UserHasher

log = logging.getLogger("bot.updates")


class UpdateLogMiddleware(BaseMiddleware):
    def __init__(self, metrics: BotMetrics, hash_user: UserHasher):
        self.metrics = metrics
        self.hash_user = hash_user

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = event.event_type if isinstance(event, Update) else type(event).__name__
        message = getattr(event, "message", None)
        if message is not None:
            content = message.content_type
            kind = f"message:{getattr(content, 'value', content)}"  # an enum member, its value is the name
        self.metrics.updates.labels(kind=kind).inc()
        user: User | None = data.get("event_from_user")
        started = time.monotonic()
        try:
            return await handler(event, data)
        finally:
            log.debug(
                "update handled",
                extra={
                    "kind": kind,
                    "user": self.hash_user(user.id if user else None),
                    "elapsed_ms": int((time.monotonic() - started) * 1000),
                },
            )

"""Puts `t` (a Translator) into every handler's data: the language chosen in /settings, else the user's
Telegram language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject, User

from bot.i18n import Translator, pick_language
from bot.identity import sender_id
from bot.services.preferences import Preferences


class LanguageMiddleware(BaseMiddleware):
    def __init__(self, preferences: Preferences):
        self.preferences = preferences

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        who = sender_id(event) if isinstance(event, Message) and event.from_user else (user.id if user else None)
        chosen = await self.preferences.language(who) if who is not None else None
        data["t"] = Translator(chosen or pick_language(user.language_code if user else None))
        return await handler(event, data)

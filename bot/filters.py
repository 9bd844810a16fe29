"""Filters: is the message for us (groups), is the sender an admin."""

from __future__ import annotations

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.filters import BaseFilter
from aiogram.types import Message

from bot.identity import sender_id
from bot.services.access import AccessControl


class AddressedToBot(BaseFilter):
    """Private chats: always. Groups: only a mention of the bot or a reply to one of its messages (the same
    rule as Telegram's privacy mode, so the bot behaves the same with privacy mode off).
    For an album, any of its items may carry the mention."""

    async def __call__(self, message: Message, bot: Bot, album: list[Message] | None = None) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        me = await bot.me()
        for item in album or [message]:
            reply = item.reply_to_message
            if reply and reply.from_user and reply.from_user.id == me.id:
                return True
            text = item.text or item.caption or ""
            for entity in item.entities or item.caption_entities or []:
                if (
                    entity.type == "mention"
                    and me.username
                    and entity.extract_from(text).lower() == f"@{me.username.lower()}"
                ):
                    return True
                if entity.type == "text_mention" and entity.user and entity.user.id == me.id:
                    return True
        return False


class IsAdmin(BaseFilter):
    async def __call__(self, message: Message, access: AccessControl) -> bool:
        return message.from_user is not None and access.is_admin(sender_id(message))

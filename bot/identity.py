"""Who sent a message, for rate limits, bans, the one-answer rule and dialogs.

Telegram puts a stand-in account in `from` when a message is posted on behalf of a chat: @Channel_Bot
(136817688) for "send as channel", @GroupAnonymousBot (1087968824) for anonymous group admins, and the chat
that speaks in `sender_chat`. Keyed on `from.id`, every channel in a group would share one dialog and one
busy flag, and a banned channel could not be banned without banning them all. So such a message's sender is
its `sender_chat` (a negative id; anonymous admins of one group are all the group itself, as Telegram hides
who they are).
"""

from __future__ import annotations

from aiogram.types import Message


def sender_id(message: Message) -> int:
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id


def sender_name(message: Message) -> str:
    if message.sender_chat is not None:
        return message.sender_chat.title or message.sender_chat.username or ""
    return message.from_user.first_name

"""The control API in Python: act as Telegram users, read what they see, inject faults, wait for things.

Mixed into LocalBotAPI; every method here has an HTTP twin under /_control/ (control_http.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import media
from .entities import detect_entities, sort_entities
from .errors import ControlError
from .state import BotAccount, Chat, StoredMessage, User, membership_update

if TYPE_CHECKING:
    from .server import LocalBotAPI

T = TypeVar("T")


class Control:
    """Needs from its host: bots, users, files, faults, rate_limits, events, call_log, bot(), emit(),
    and the id counters _user_ids and _group_ids."""

    # --- people and chats -------------------------------------------------------------------------------
    async def create_user(
        self: LocalBotAPI,
        user_id: int | None = None,
        first_name: str | None = None,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
    ) -> User:
        """A Telegram user (defaults: "User", language "en"). The same id again returns that user, with
        the fields given here changed. Their private chat appears when they first write, as in Telegram."""
        if user_id is not None and user_id in self.users:
            user = self.users[user_id]
            changes = {"first_name": first_name, "username": username, "last_name": last_name}
            for key, value in {**changes, "language_code": language_code}.items():
                if value is not None:
                    setattr(user, key, value)
            return user
        user = User(
            user_id or next(self._user_ids), first_name or "User", username, last_name, language_code or "en"
        )
        self.users[user.id] = user
        return user

    async def create_group(
        self: LocalBotAPI,
        title: str,
        members: Iterable[int],
        *,
        chat_type: str = "supergroup",
        chat_id: int | None = None,
        admins: Iterable[int] = (),
        bot_is_admin: bool = False,
        token: str | None = None,
    ) -> Chat:
        """A group with these users and the bot in it."""
        if chat_type not in ("group", "supergroup"):
            raise ControlError("chat_type is group or supergroup")
        bot = self.bot(token)
        member_ids = {self._user(uid).id for uid in members}
        number = next(self._group_ids)
        chat_id = chat_id or (-1001000000000 - number if chat_type == "supergroup" else -4000000000 - number)
        chat = Chat(chat_id, chat_type, title=title, members=member_ids | {bot.me.id}, admins=set(admins))
        if bot_is_admin:
            chat.admins.add(bot.me.id)
        bot.chats[chat.id] = chat
        inviter = self.users[min(member_ids)] if member_ids else bot.me
        bot.updates.push("my_chat_member", membership_update(chat, inviter, bot.me, "left", "member"))
        self.events.notify()
        return chat

    async def block(
        self: LocalBotAPI, user_id: int, blocked: bool = True, *, token: str | None = None
    ) -> None:
        """The user blocks (or unblocks) the bot: sends to them fail with 403, the bot gets my_chat_member."""
        bot, user = self.bot(token), self._user(user_id)
        chat = self._private_chat(bot, user)
        if chat.blocked != blocked:
            chat.blocked = blocked
            old, new = ("member", "kicked") if blocked else ("kicked", "member")
            bot.updates.push("my_chat_member", membership_update(chat, user, bot.me, old, new))
            self.emit(bot, "blocked", chat, blocked=blocked)

    def _user(self: LocalBotAPI, user_id: int) -> User:
        user = self.users.get(int(user_id))
        if user is None:
            raise ControlError(f"no user {user_id}: create_user first")
        return user

    def _private_chat(self: LocalBotAPI, bot: BotAccount, user: User) -> Chat:
        chat = bot.chats.get(user.id)
        if chat is None:
            chat = bot.chats[user.id] = Chat(user.id, "private", user=user, members={user.id, bot.me.id})
        return chat

    def _chat_of(self: LocalBotAPI, bot: BotAccount, user: User, chat_id: int | None) -> Chat:
        if chat_id is None or chat_id == user.id:
            chat = self._private_chat(bot, user)
            if chat.blocked:
                raise ControlError(f"user {user.id} blocked the bot: unblock first")
            return chat
        chat = bot.chats.get(chat_id)
        if chat is None or user.id not in chat.members:
            raise ControlError(f"user {user.id} is not in chat {chat_id}")
        return chat

    # --- sending as a user ----------------------------------------------------------------------------
    def _post(
        self: LocalBotAPI,
        user_id: int,
        content: dict[str, Any],
        chat_id: int | None,
        reply_to: int | None,
        token: str | None,
    ) -> StoredMessage:
        bot, user = self.bot(token), self._user(user_id)
        chat = self._chat_of(bot, user, chat_id)
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                raise ControlError(f"no message {reply_to} in chat {chat.id}")
            content["reply_to_message"] = {k: v for k, v in target.data.items() if k != "reply_to_message"}
        message = chat.add_message(user, content, from_bot=False)
        self.emit(bot, "message", chat, message)
        if bot.sees(chat, message):
            bot.updates.push("message", message.data)
        return message

    async def send_text(
        self: LocalBotAPI,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
        mention: bool = False,
        token: str | None = None,
    ) -> StoredMessage:
        """A text message; commands, @mentions and links get their entities. mention=True prefixes
        "@<bot username> " (how a group member addresses the bot)."""
        if mention:
            text = f"@{self.bot(token).me.username} {text}"
        if not text.strip():
            raise ControlError("a message needs some text")
        content: dict[str, Any] = {"text": text}
        if entities := sort_entities(detect_entities(text, [])):
            content["entities"] = entities
        return self._post(user_id, content, chat_id, reply_to, token)

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
        token: str | None = None,
    ) -> StoredMessage:
        """A file sent "as a file". file_size without data fakes a big file cheaply (getFile refuses >20 MB)."""
        content = {"document": media.document(self.files, data, file_name, mime_type, file_size)}
        return self._post(user_id, self._with_caption(content, caption), chat_id, None, token)

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

    async def press_button(
        self: LocalBotAPI,
        user_id: int,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> str:
        """The user taps an inline button with this callback_data; returns the callback query id."""
        bot, user = self.bot(token), self._user(user_id)
        chat = self._chat_of(bot, user, chat_id)
        message = chat.messages.get(message_id)
        buttons = (
            [b for row in (message.data.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
            if message
            else []
        )
        if message is None or not any(b.get("callback_data") == data for b in buttons):
            raise ControlError(f"message {message_id} has no button with callback_data {data!r}")
        query_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        bot.callback_answers[query_id] = None
        bot.updates.push(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_json(),
                "message": message.data,
                "chat_instance": str(abs(chat.id) * 7919),
                "data": data,
            },
        )
        self.events.notify()
        return query_id

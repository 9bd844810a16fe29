"""The control API in Python: act as Telegram users (people, chats, text; media in control_media.py, taps
and reactions in gestures.py; reading and waiting in observe.py).

Mixed into LocalBotAPI; every method here has an HTTP twin under /_control/ (control_http.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .entities import detect_entities, sort_entities
from .errors import ControlError
from .state import BotAccount, Chat, StoredMessage, User, membership_update

if TYPE_CHECKING:
    from .server import LocalBotAPI


class Control:
    """Needs from its host: bots, users, events, next_ids (the id counters), bot(), emit()."""

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
        else:
            user = User(
                user_id or self._take_id("user"),
                first_name or "User",
                username,
                last_name,
                language_code or "en",
            )
            self.users[user.id] = user
        self.events.notify()  # nothing for viewers, but a saved state should have it
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
        reactions_enabled: bool = True,
        token: str | None = None,
    ) -> Chat:
        """These users and the bot in a group (reactions_enabled=False: its admins turned those off)."""
        if chat_type not in ("group", "supergroup"):
            raise ControlError("chat_type is group or supergroup")
        bot = self.bot(token)
        member_ids = {self._user(uid).id for uid in members}
        number = self._take_id("group")
        chat_id = chat_id or (-1001000000000 - number if chat_type == "supergroup" else -4000000000 - number)
        if chat_id in bot.chats:
            raise ControlError(f"chat {chat_id} exists already")
        chat = Chat(chat_id, chat_type, title=title, members=member_ids | {bot.me.id}, admins=set(admins))
        chat.reactions_enabled = reactions_enabled
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

    def _take_id(self: LocalBotAPI, kind: str) -> int:
        taken = self.next_ids[kind]
        self.next_ids[kind] += 1
        return taken

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
        return self._publish(bot, self._chat_of(bot, user, chat_id), user, content, reply_to)

    def _publish(
        self: LocalBotAPI,
        bot: BotAccount,
        chat: Chat,
        sender: User,
        content: dict[str, Any],
        reply_to: int | None = None,
    ) -> StoredMessage:
        """Stores a message from someone other than the bot; the bot gets it if privacy mode lets it."""
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                raise ControlError(f"no message {reply_to} in chat {chat.id}")
            content["reply_to_message"] = {k: v for k, v in target.data.items() if k != "reply_to_message"}
        message = chat.add_message(sender, content, from_bot=False)
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
        return self._post(user_id, _text_content(text), chat_id, reply_to, token)

    # --- posting on behalf of a chat ------------------------------------------------------------------
    async def send_as_channel(
        self: LocalBotAPI,
        chat_id: int,
        text: str,
        *,
        channel_id: int = -1009999000001,
        channel_title: str = "Channel",
        channel_username: str | None = None,
        reply_to: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """A group message "sent as a channel": `from` is Telegram's @Channel_Bot (136817688), the channel
        is in `sender_chat`. Bots meet this in groups linked to a channel and from members who post as one."""
        bot = self.bot(token)
        sender_chat = {"id": channel_id, "type": "channel", "title": channel_title}
        if channel_username:
            sender_chat["username"] = channel_username
        content = _text_content(text) | {"sender_chat": sender_chat}
        return self._publish(bot, self._group(bot, chat_id), CHANNEL_BOT, content, reply_to)

    async def send_as_anonymous_admin(
        self: LocalBotAPI,
        chat_id: int,
        text: str,
        *,
        author_signature: str | None = None,
        reply_to: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """A message from an anonymous group admin: `from` is @GroupAnonymousBot (1087968824) and
        `sender_chat` is the group itself."""
        bot = self.bot(token)
        chat = self._group(bot, chat_id)
        content = _text_content(text) | {"sender_chat": chat.to_json()}
        if author_signature:
            content["author_signature"] = author_signature
        return self._publish(bot, chat, GROUP_ANONYMOUS_BOT, content, reply_to)

    def _group(self: LocalBotAPI, bot: BotAccount, chat_id: int) -> Chat:
        chat = bot.chats.get(chat_id)
        if chat is None or not chat.is_group:
            raise ControlError(f"no group {chat_id}: create_group first")
        return chat


# The service accounts Telegram puts in `from` when a message is posted on behalf of a chat.
CHANNEL_BOT = User(136817688, "Channel", username="Channel_Bot", is_bot=True)
GROUP_ANONYMOUS_BOT = User(1087968824, "Group", username="GroupAnonymousBot", is_bot=True)


def _text_content(text: str) -> dict[str, Any]:
    """A text message as a Telegram client sends it: commands, @mentions, links... get their entities."""
    if not text.strip():
        raise ControlError("a message needs some text")
    content: dict[str, Any] = {"text": text}
    if entities := sort_entities(detect_entities(text, [])):
        content["entities"] = entities
    return content

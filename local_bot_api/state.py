"""What the server remembers: users, chats with their messages (and edit history), files, bot accounts."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .updates import UpdateQueue

MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses bigger files, like api.telegram.org


@dataclass
class User:
    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


@dataclass
class StoredMessage:
    """A message in a chat: its Telegram JSON as it is now, plus what a viewer needs (history, deletion)."""

    data: dict[str, Any]
    from_bot: bool
    parse_mode: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions, oldest first
    deleted: bool = False
    keyboard: dict[str, Any] | None = None  # a reply keyboard (not part of the Message object) for viewers
    created: float = field(default_factory=time.monotonic)
    updated: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int:
        return self.data["chat"]["id"]

    @property
    def message_id(self) -> int:
        return self.data["message_id"]

    @property
    def text(self) -> str | None:
        """The text, or the caption of a media message."""
        return self.data.get("text", self.data.get("caption"))

    @property
    def entities(self) -> list[dict[str, Any]]:
        return self.data.get("entities", self.data.get("caption_entities", []))

    @property
    def edit_count(self) -> int:
        return len(self.history)

    def to_json(self, history: bool = True) -> dict[str, Any]:
        view = {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "from_bot": self.from_bot,
            "parse_mode": self.parse_mode,
            "deleted": self.deleted,
            "edit_count": self.edit_count,
            "message": self.data,
        }
        if self.keyboard is not None:
            view["keyboard"] = self.keyboard
        if history:
            view["history"] = self.history
        return view


@dataclass
class Chat:
    id: int
    type: str  # private, group, supergroup
    title: str | None = None
    user: User | None = None  # the person on the other side of a private chat
    members: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)
    blocked: bool = False  # a private chat whose user blocked the bot
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1
    action: str | None = None
    action_until: float = 0.0
    last_bot_activity: float = 0.0  # time.monotonic() of the bot's last send, edit or delete here

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.user is not None:
            data.update(
                {k: v for k, v in self.user.to_json().items() if k in ("first_name", "last_name", "username")}
            )
        if self.title:
            data["title"] = self.title
        return data

    def add_message(
        self, sender: User, content: dict[str, Any], from_bot: bool, parse_mode: str | None = None
    ) -> StoredMessage:
        data = {
            "message_id": self.next_message_id,
            "from": sender.to_json(),
            "chat": self.to_json(),
            "date": int(time.time()),
        }
        data.update(content)
        self.next_message_id += 1
        message = StoredMessage(data=data, from_bot=from_bot, parse_mode=parse_mode)
        self.messages[message.message_id] = message
        return message

    def current_action(self) -> str | None:
        return self.action if self.action and time.monotonic() < self.action_until else None


@dataclass
class FileRecord:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes | None  # None: a file known only by its size (to test size limits cheaply)
    size: int
    mime_type: str | None = None
    file_name: str | None = None
    media: Any = (
        None  # the object a message carries for it (PhotoSize list, Document...), to resend by file_id
    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.size <= MAX_DOWNLOAD:
            data["file_path"] = self.file_path
        return data


class FileStore:
    """Uploaded bytes under Telegram-looking ids; file_path is what /file/bot<token>/<path> serves."""

    def __init__(self) -> None:
        self._by_id: dict[str, FileRecord] = {}
        self._by_path: dict[str, FileRecord] = {}
        self._counter = 0

    def add(
        self,
        data: bytes | None,
        folder: str,
        extension: str,
        *,
        mime_type: str | None = None,
        file_name: str | None = None,
        size: int | None = None,
    ) -> FileRecord:
        self._counter += 1
        record = FileRecord(
            file_id=_telegram_id(folder, 64),
            file_unique_id=_telegram_id(folder, 16),
            file_path=f"{folder}/file_{self._counter}.{extension}",
            data=data,
            size=size if size is not None else len(data or b""),
            mime_type=mime_type,
            file_name=file_name,
        )
        self._by_id[record.file_id] = record
        self._by_path[record.file_path] = record
        return record

    def get(self, file_id: str) -> FileRecord | None:
        return self._by_id.get(file_id)

    def by_path(self, path: str) -> FileRecord | None:
        return self._by_path.get(path)


_PREFIXES = {"photos": "AgAC", "documents": "BQAC", "stickers": "CAAC", "voice": "AwAC", "videos": "BAAC"}


def _telegram_id(folder: str, length: int) -> str:
    """A random id shaped like Telegram's (the prefix hints at the kind, as real ones do)."""
    return (_PREFIXES.get(folder, "AQAD") + secrets.token_urlsafe(length))[:length]


@dataclass
class Webhook:
    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None

    def info(self, pending: int, allowed_updates: list[str] | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": self.url,
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if self.url:
            data["max_connections"] = self.max_connections
            if allowed_updates:
                data["allowed_updates"] = allowed_updates
        if self.last_error_date:
            data["last_error_date"] = self.last_error_date
            data["last_error_message"] = self.last_error_message
        return data


class BotAccount:
    """One bot token: its identity, its view of chats, its update queue, webhook and command menus."""

    def __init__(self, token: str, username: str, first_name: str, privacy_mode: bool = True) -> None:
        self.token = token
        self.me = User(id=int(token.split(":", 1)[0]), first_name=first_name, username=username, is_bot=True)
        self.privacy_mode = privacy_mode
        self.chats: dict[int, Chat] = {}
        self.updates = UpdateQueue()
        self.webhook = Webhook()
        # (scope type, chat_id, user_id, language_code) -> commands
        self.commands: dict[tuple[str, int | None, int | None, str], list[dict[str, str]]] = {}
        self.callback_answers: dict[str, dict[str, Any] | None] = {}  # query id -> answer (None: unanswered)

    def me_json(self) -> dict[str, Any]:
        return {
            **self.me.to_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        chat = self.chats.get(chat_id)
        return chat.messages.get(message_id) if chat else None

    def sees(self, chat: Chat, message: StoredMessage) -> bool:
        """Group privacy mode: a bot sees commands, mentions of it and replies to it; everything in private."""
        if not chat.is_group or not self.privacy_mode:
            return True
        data = message.data
        text = data.get("text") or data.get("caption") or ""
        username = (self.me.username or "").lower()
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            if "@" not in command or command.split("@", 1)[1].lower() == username:
                return True
        if re.search(rf"(?<![\w@])@{re.escape(username)}(?!\w)", text, re.IGNORECASE):
            return True
        reply = data.get("reply_to_message")
        return bool(reply and reply.get("from", {}).get("id") == self.me.id)


def membership_update(chat: Chat, actor: User, bot_user: User, old: str, new: str) -> dict[str, Any]:
    """A my_chat_member update payload: the bot's status in a chat changed from old to new."""
    return {
        "chat": chat.to_json(),
        "from": actor.to_json(),
        "date": int(time.time()),
        "old_chat_member": {
            "status": old,
            "user": bot_user.to_json(),
            **({"until_date": 0} if old == "kicked" else {}),
        },
        "new_chat_member": {
            "status": new,
            "user": bot_user.to_json(),
            **({"until_date": 0} if new == "kicked" else {}),
        },
    }

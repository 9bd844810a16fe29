"""What the server remembers: users, chats with their messages (edit history, reactions) and drafts, bot
accounts with their callback queries, command menus and descriptions. Files live in files.py."""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .updates import UpdateQueue


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
    reactions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # actor id -> ReactionType list
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
        if self.reactions:
            view["reactions"] = [{"actor_id": k, "reaction": v} for k, v in self.reactions.items()]
        if history:
            view["history"] = self.history
        return view


@dataclass
class Draft:
    """What sendMessageDraft shows: an ephemeral preview that lives until it is not refreshed for 30 s, a
    message from the bot replaces it, or the user stops it."""

    draft_id: int
    text: str
    entities: list[dict[str, Any]]
    parse_mode: str | None
    can_stop: bool
    keep_on_stop: bool
    message_thread_id: int | None = None
    stopped: bool = False  # the user pressed stop and keep_on_stop left it on screen
    versions: list[str] = field(default_factory=list)  # every text it showed, oldest first
    updated: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        return {
            "draft_id": self.draft_id,
            "text": self.text,
            "entities": self.entities,
            "parse_mode": self.parse_mode,
            "can_stop": self.can_stop and not self.stopped,
            "keep_on_stop": self.keep_on_stop,
            "message_thread_id": self.message_thread_id,
            "stopped": self.stopped,
            "version_count": len(self.versions),
        }


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
    reactions_enabled: bool = True  # a group's admins may turn reactions off
    draft: Draft | None = None
    stopped_drafts: deque[int] = field(default_factory=lambda: deque(maxlen=64))  # later calls not shown

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

    def current_draft(self, lifetime: float) -> Draft | None:
        """The draft on screen: None once `lifetime` seconds passed without an update."""
        if self.draft is not None and time.monotonic() - self.draft.updated > lifetime:
            self.draft = None
        return self.draft


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


@dataclass
class CallbackQuery:
    """A button press the bot has to answer (answerCallbackQuery) before the client gives up waiting."""

    id: str
    chat_id: int
    user_id: int
    message_id: int
    data: str
    asked: float = field(default_factory=time.monotonic)
    answer: dict[str, Any] | None = None


_KEPT_CALLBACK_QUERIES = 1000  # the oldest are forgotten beyond this: answering them is an error anyway


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
        self.callback_queries: OrderedDict[str, CallbackQuery] = OrderedDict()
        self.descriptions: dict[tuple[str, str], str] = {}  # ("description"|"short_description", lang)

    @property
    def callback_answers(self) -> dict[str, dict[str, Any] | None]:
        """Query id -> what the bot answered (None: not answered yet)."""
        return {query.id: query.answer for query in self.callback_queries.values()}

    def remember_query(self, query: CallbackQuery) -> None:
        self.callback_queries[query.id] = query
        while len(self.callback_queries) > _KEPT_CALLBACK_QUERIES:
            self.callback_queries.popitem(last=False)

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

"""The server's state on disk, so a playground keeps its history across restarts (`make demo` uses
.demo/state.json): users, chats with their messages, command menus, descriptions, files (their bytes in a
`files/` folder next to the JSON, written once each), the id counters and the port.

Not kept, as after a restart of Telegram's own server: pending updates, webhooks, drafts, callback queries.
Written atomically (a temporary file, then a rename), so a crash mid-save leaves the previous state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import FileRecord
from .state import Chat, StoredMessage, User

if TYPE_CHECKING:
    from .server import LocalBotAPI

log = logging.getLogger(__name__)
VERSION = 1


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.blobs = self.path.parent / "files"

    def remembered_port(self) -> int | None:
        """The port the last run served on, if there was one (a restart tries it first)."""
        try:
            port = json.loads(self.path.read_text()).get("port")
        except (OSError, ValueError, AttributeError):
            return None
        return port if isinstance(port, int) and 0 < port < 65536 else None

    # --- saving -----------------------------------------------------------------------------------------
    def save(self, api: LocalBotAPI) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        files = []
        for record in api.files.records():
            files.append({**_fields(record, exclude=("data",)), "stored": record.data is not None})
            blob = self.blobs / record.file_unique_id
            if record.data is not None and not blob.exists():
                _write_atomically(blob, record.data)
        state = {
            "version": VERSION,
            "saved_at": int(time.time()),
            "port": api.port,
            "next_ids": api.next_ids,
            "users": [dataclasses.asdict(user) for user in api.users.values()],
            "files": files,
            "bots": {
                token: {
                    "chats": [_chat_json(chat) for chat in bot.chats.values()],
                    "commands": [[list(key), commands] for key, commands in bot.commands.items()],
                    "descriptions": [[*key, text] for key, text in bot.descriptions.items()],
                }
                for token, bot in api.bots.items()
            },
        }
        _write_atomically(self.path, json.dumps(state, ensure_ascii=False).encode())

    # --- loading ----------------------------------------------------------------------------------------
    def load(self, api: LocalBotAPI) -> bool:
        """Restores a saved state into a fresh server; False when there is none. A file that cannot be
        read is moved aside (…broken-<time>) with a warning, and the server starts empty."""
        try:
            state = json.loads(self.path.read_text())
            if state.get("version") != VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {VERSION}")
            self._restore(api, state)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
            self.path.replace(aside)
            log.warning(
                "could not restore %s (%s); moved it to %s and started empty", self.path, error, aside
            )
            return False
        return True

    def _restore(self, api: LocalBotAPI, state: dict[str, Any]) -> None:
        """Reads everything first and changes the server only once all of it made sense."""
        users = {u["id"]: User(**u) for u in state["users"]}
        records = []
        for item in state["files"]:
            blob = self.blobs / item["file_unique_id"]
            stored = item.pop("stored")
            records.append(FileRecord(**item, data=blob.read_bytes() if stored and blob.exists() else None))
        bots = {}
        for token, saved in state["bots"].items():
            if token in api.bots:  # a bot this run does not serve: its chats are not kept
                chats = [_chat_from_json(chat, users) for chat in saved["chats"]]
                commands = {tuple(key): value for key, value in saved["commands"]}
                descriptions = {(kind, lang): text for kind, lang, text in saved["descriptions"]}
                bots[token] = (chats, commands, descriptions)
        next_ids = {key: int(value) for key, value in state["next_ids"].items()}

        api.next_ids.update(next_ids)
        api.users.update(users)
        for record in records:
            api.files.put(record)
        for token, (chats, commands, descriptions) in bots.items():
            bot = api.bots[token]
            bot.chats.update({chat.id: chat for chat in chats})
            bot.commands.update(commands)
            bot.descriptions.update(descriptions)


_CHAT_FIELDS = ("id", "type", "title", "blocked", "reactions_enabled", "next_message_id")
_MESSAGE_FIELDS = ("data", "from_bot", "parse_mode", "history", "deleted", "keyboard")


def _fields(item: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(item, f.name) for f in dataclasses.fields(item) if f.name not in exclude}


def _chat_json(chat: Chat) -> dict[str, Any]:
    return {
        **{name: getattr(chat, name) for name in _CHAT_FIELDS},
        "user_id": chat.user.id if chat.user else None,
        "members": sorted(chat.members),
        "admins": sorted(chat.admins),
        "messages": [
            {
                **{name: getattr(message, name) for name in _MESSAGE_FIELDS},
                "reactions": [[actor, reaction] for actor, reaction in message.reactions.items()],
            }
            for message in chat.messages.values()
        ],
    }


def _chat_from_json(data: dict[str, Any], users: dict[int, User]) -> Chat:
    chat = Chat(
        **{name: data[name] for name in _CHAT_FIELDS},
        user=users.get(data["user_id"]) if data["user_id"] is not None else None,
        members=set(data["members"]),
        admins=set(data["admins"]),
    )
    for item in data["messages"]:
        message = StoredMessage(**{name: item[name] for name in _MESSAGE_FIELDS})
        message.reactions = {int(actor): reaction for actor, reaction in item["reactions"]}
        chat.messages[message.message_id] = message
    return chat


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)

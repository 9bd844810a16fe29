"""The control API, gestures: what a user does with the bot's messages rather than writing one. Taps an
inline button, reacts with an emoji, presses "stop" on a streamed draft. Each queues the update Telegram
sends for it. Mixed into LocalBotAPI next to Control (control.py)."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from .errors import ControlError
from .interactive import REACTION_EMOJI, album_head
from .state import CallbackQuery, StoredMessage

if TYPE_CHECKING:
    from .server import LocalBotAPI


class Gestures:
    """Needs from its host: bot(), events, emit(), draft_lifetime, and Control's _user and _chat_of."""

    async def press_button(
        self: LocalBotAPI,
        user_id: int,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> str:
        """The user taps an inline button with this callback_data: a `callback_query` update with a fresh
        id, the message as it is now and the user in `from`. Returns the query id (answer it within
        `callback_query_timeout` seconds; the answer lands in `bot().callback_answers[id]`)."""
        bot, user = self.bot(token), self._user(user_id)
        chat = self._chat_of(bot, user, chat_id)
        message = chat.messages.get(message_id)
        keyboard = (message.data.get("reply_markup") or {}) if message and not message.deleted else {}
        buttons = [button for row in keyboard.get("inline_keyboard", []) for button in row]
        if not any(button.get("callback_data") == data for button in buttons):
            raise ControlError(f"message {message_id} has no button with callback_data {data!r}")
        query = CallbackQuery(str(secrets.randbelow(9 * 10**18) + 10**18), chat.id, user.id, message_id, data)
        bot.remember_query(query)
        update = {
            "id": query.id,
            "from": user.to_json(),
            "message": message.data,
            "chat_instance": str(abs(chat.id) * 7919),
            "data": data,
        }
        bot.updates.push("callback_query", update)
        self.emit(bot, "button", chat, message_id=message_id, callback_query_id=query.id, user_id=user.id)
        return query.id

    async def react(
        self: LocalBotAPI,
        user_id: int,
        message_id: int,
        emoji: str | list[str] | None = None,
        *,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> StoredMessage:
        """The user sets (None or "": removes) their reaction to a message. The bot gets a
        `message_reaction` update only if it asked for it in allowed_updates and, in a group, is an admin:
        Telegram's rules. A user without Premium has one reaction per message."""
        bot, user = self.bot(token), self._user(user_id)
        chat = self._chat_of(bot, user, chat_id)
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise ControlError(f"no message {message_id} in chat {chat.id}")
        message = album_head(chat, message)
        emojis = [emoji] if isinstance(emoji, str) else list(emoji or [])
        emojis = [e for e in emojis if e]
        if len(emojis) > 1:
            raise ControlError("a user without Telegram Premium sets one reaction per message")
        if not chat.reactions_enabled or any(e not in REACTION_EMOJI for e in emojis):
            raise ControlError(f"{emojis[0] if emojis else 'reactions'} not allowed in this chat")
        old = message.reactions.get(user.id, [])
        new = [{"type": "emoji", "emoji": e} for e in emojis]
        if new == old:
            return message
        if new:
            message.reactions[user.id] = new
        else:
            message.reactions.pop(user.id, None)
        if not chat.is_group or bot.me.id in chat.admins:
            update: dict[str, Any] = {
                "chat": chat.to_json(),
                "message_id": message.message_id,
                "user": user.to_json(),
                "date": int(time.time()),
                "old_reaction": old,
                "new_reaction": new,
            }
            bot.updates.push("message_reaction", update)  # dropped unless allowed_updates lists it
        self.emit(bot, "reaction", chat, message, actor_id=user.id)
        return message

    async def stop_draft(
        self: LocalBotAPI, user_id: int, *, chat_id: int | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The user presses stop on the bot's draft (shown only when it was sent with can_stop): a
        `stopped_message_generation` update (chat, draft_id). The draft stays on screen if keep_on_stop
        was set, and later drafts with that id are not shown."""
        bot, user = self.bot(token), self._user(user_id)
        chat = self._chat_of(bot, user, chat_id)
        draft = chat.current_draft(self.draft_lifetime)
        if draft is None:
            raise ControlError(f"no draft on screen in chat {chat.id}")
        if not draft.can_stop or draft.stopped:
            raise ControlError("this draft has no stop button (it was sent without can_stop)")
        update: dict[str, Any] = {"chat": chat.to_json(), "draft_id": draft.draft_id}
        if draft.message_thread_id:
            update["message_thread_id"] = draft.message_thread_id
        bot.updates.push("stopped_message_generation", update)
        chat.stopped_drafts.append(draft.draft_id)
        if draft.keep_on_stop:
            draft.stopped = True
            view = draft.to_json()
        else:
            chat.draft, view = None, None
        self.emit(bot, "draft", chat, draft=view)
        return update

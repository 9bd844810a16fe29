"""Bot API methods for a chat's live parts: streamed drafts, reactions, answers to button presses.

Error texts are Telegram's: the official server's (tdlib/telegram-bot-api, Client.cpp) where it checks
itself, and the MTProto errors it passes on (TEXTDRAFT_PEER_INVALID, REACTION_INVALID, REACTIONS_TOO_MANY).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .errors import bad_request
from .methods import find_chat, formatted
from .params import Params
from .state import BotAccount, Chat, Draft, StoredMessage

if TYPE_CHECKING:
    from .server import LocalBotAPI

# ReactionTypeEmoji: the emoji Telegram allows (the Bot API's list, as aiogram's ReactionTypeEmoji quotes it).
REACTION_EMOJI = frozenset(
    "❤ 👍 👎 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌 🏆 💔 🤨 😐 "
    "🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒 💘 🙉 🦄 😘 💊 🙊 😎 👾 "
    "🤷‍♂ 🤷 🤷‍♀ 😡".split()
)
MAX_CALLBACK_ANSWER = 200  # answerCallbackQuery text, characters
MAX_DRAFT_VERSIONS = 1000  # the texts a draft keeps for tests to look at (the oldest go first)


# --- sendMessageDraft ---------------------------------------------------------------------------------
async def send_message_draft(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    """Shows (or replaces) the chat's draft. Private chats only; an empty text is the "Thinking…" state."""
    chat = find_chat(api, bot, p.chat_id())
    if chat.type != "private":
        raise bad_request("TEXTDRAFT_PEER_INVALID")
    draft_id = p.int("draft_id", required=True)
    if not draft_id:
        raise bad_request("draft_id must be non-zero")
    text, entities, parse_mode = formatted(p, required=False)
    if draft_id in chat.stopped_drafts:
        return True  # the user stopped this generation: Telegram accepts the call and shows nothing
    draft = chat.current_draft(api.draft_lifetime)
    if draft is None or draft.draft_id != draft_id:
        draft = chat.draft = Draft(
            draft_id,
            text,
            entities,
            parse_mode,
            can_stop=p.bool("can_stop"),
            keep_on_stop=p.bool("keep_on_stop"),
            message_thread_id=p.int("message_thread_id"),
        )
    else:
        draft.text, draft.entities, draft.parse_mode = text, entities, parse_mode
        draft.can_stop, draft.keep_on_stop = p.bool("can_stop"), p.bool("keep_on_stop")
        draft.updated = time.monotonic()
    draft.versions.append(text)
    del draft.versions[:-MAX_DRAFT_VERSIONS]
    chat.last_bot_activity = time.monotonic()
    api.emit(bot, "draft", chat, draft=draft.to_json())
    return True


# --- setMessageReaction -------------------------------------------------------------------------------
def reaction_types(raw: Any) -> list[dict[str, Any]]:
    """The `reaction` parameter parsed as the official server does (before any chat is looked at)."""
    if raw in (None, "", []):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise bad_request("can't parse reaction types JSON object") from None
    if not isinstance(raw, list):
        raise bad_request("expected an Array of ReactionType")
    parsed = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request("can't parse ReactionType: expected an Object")
        kind = item.get("type")
        field = {"emoji": "emoji", "custom_emoji": "custom_emoji_id"}.get(kind or "")
        if kind is None:
            raise bad_request("can't parse ReactionType: Can't find field \"type\"")
        if field is None:
            raise bad_request("can't parse ReactionType: invalid reaction type specified")
        if not item.get(field):
            raise bad_request(f"can't parse ReactionType: Can't find field \"{field}\"")
        parsed.append({"type": kind, field: str(item[field])})
    return parsed


def album_head(chat: Chat, message: StoredMessage) -> StoredMessage:
    """A reaction to an album goes to its first message that is not deleted (the Bot API documents it)."""
    group = message.data.get("media_group_id")
    if not group:
        return message
    return next(m for m in chat.messages.values() if m.data.get("media_group_id") == group and not m.deleted)


async def set_message_reaction(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    reaction = reaction_types(p.raw("reaction"))
    chat = find_chat(api, bot, p.chat_id())
    message = chat.messages.get(p.int("message_id") or 0)
    if message is None or message.deleted:
        raise bad_request("message to react not found")
    message = album_head(chat, message)
    if not chat.reactions_enabled or any(
        r["type"] != "emoji" or r["emoji"] not in REACTION_EMOJI for r in reaction
    ):
        raise bad_request("REACTION_INVALID")
    if len(reaction) > 1:  # bots react like users without Premium: one reaction per message
        raise bad_request("REACTIONS_TOO_MANY")
    if reaction:
        message.reactions[bot.me.id] = reaction
    else:
        message.reactions.pop(bot.me.id, None)
    # No update for it: "The update isn't received for reactions set by bots."
    api.emit(bot, "reaction", chat, message, actor_id=bot.me.id, big=p.bool("is_big"))
    return True


# --- answerCallbackQuery ------------------------------------------------------------------------------
async def answer_callback_query(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    query = bot.callback_queries.get(p.str("callback_query_id", required=True) or "")
    too_old = query is not None and time.monotonic() - query.asked > api.callback_query_timeout
    if query is None or query.answer is not None or too_old:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = p.str("text") or ""
    if len(text) > MAX_CALLBACK_ANSWER:
        raise bad_request("MESSAGE_TOO_LONG")
    cache_time = min(
        max(p.int("cache_time", default=0) or 0, 0), 30 * 24 * 3600
    )  # clamped, as the server does
    query.answer = {
        "text": text or None,
        "show_alert": p.bool("show_alert"),
        "url": p.str("url"),
        "cache_time": cache_time,
    }
    chat = bot.chats.get(query.chat_id)
    api.emit(
        bot,
        "callback_answer",
        chat,
        callback_query_id=query.id,
        user_id=query.user_id,
        message_id=query.message_id,
        answer=query.answer,
    )
    return True


INTERACTIVE_METHODS = {
    "sendMessageDraft": send_message_draft,
    "setMessageReaction": set_message_reaction,
    "answerCallbackQuery": answer_callback_query,
}

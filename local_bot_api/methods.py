"""Bot API methods that send, edit and delete messages, with Telegram's validation and error texts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import media
from .entities import MAX_CAPTION, MAX_TEXT, EntityParseError, UnsupportedParseMode
from .errors import bad_request, forbidden
from .formatting import format_text
from .params import Params
from .state import BotAccount, Chat, StoredMessage

if TYPE_CHECKING:
    from .server import LocalBotAPI

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a specified content and reply markup of the message"
)
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
ACTION_SECONDS = 5.0


def find_chat(api: LocalBotAPI, bot: BotAccount, chat_id: int | str) -> Chat:
    """The chat a method addresses, or Telegram's error for a chat the bot cannot write to."""
    if isinstance(chat_id, str):
        name = chat_id.removeprefix("@").lower()
        chat = next(
            (c for c in bot.chats.values() if c.user and (c.user.username or "").lower() == name), None
        )
    else:
        chat = bot.chats.get(chat_id)
    if chat is None:
        if isinstance(chat_id, int) and chat_id in api.users:
            raise forbidden("bot can't initiate conversation with a user")
        raise bad_request("chat not found")
    if chat.blocked:
        raise forbidden("bot was blocked by the user")
    if chat.is_group and bot.me.id not in chat.members:
        raise forbidden(f"bot is not a member of the {chat.type} chat")
    return chat


def formatted(
    p: Params, field: str = "text", entities_field: str = "entities", required: bool = True
) -> tuple[str, list[dict[str, Any]], str | None]:
    """(text, entities, parse_mode) after parsing, validated like Telegram (length, emptiness)."""
    raw = p.str(field)
    if raw is None and required:
        raise bad_request("message text is empty")
    parse_mode = p.str("parse_mode")
    try:
        text, entities = format_text(raw or "", parse_mode, p.json(entities_field))
    except EntityParseError as error:
        raise bad_request(f"can't parse entities: {error}") from None
    except UnsupportedParseMode:
        raise bad_request("unsupported parse_mode") from None
    if required and not text:
        raise bad_request("message text is empty")
    if field == "text" and len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    if field == "caption" and len(text) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    return text, entities, parse_mode


def reply_markup(p: Params) -> dict[str, Any] | None:
    markup = p.json("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row if isinstance(row, list) else [None]:
            if not isinstance(button, dict) or not button.get("text"):
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            if len(str(button.get("callback_data", "")).encode()) > 64:
                raise bad_request("BUTTON_DATA_INVALID")
    return markup


def _inline(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """Only inline keyboards belong to a message; reply keyboards live in the user's client."""
    return markup if markup and "inline_keyboard" in markup else None


def _reply_target(chat: Chat, p: Params) -> dict[str, Any] | None:
    parameters = p.json("reply_parameters")
    if not isinstance(parameters, dict):
        message_id = p.int("reply_to_message_id")
        if message_id is None:
            return None
        parameters = {
            "message_id": message_id,
            "allow_sending_without_reply": p.bool("allow_sending_without_reply"),
        }
    try:
        target = chat.messages.get(int(parameters.get("message_id", 0)))
    except (TypeError, ValueError):
        raise bad_request("invalid reply_parameters specified") from None
    if target is None or target.deleted:
        if parameters.get("allow_sending_without_reply"):
            return None
        raise bad_request("message to be replied not found")
    return {k: v for k, v in target.data.items() if k != "reply_to_message"}


def deliver(
    api: LocalBotAPI, bot: BotAccount, chat: Chat, p: Params, content: dict[str, Any], parse_mode: str | None
) -> dict[str, Any]:
    """Common tail of every send method: reply, markup, flood limit, storing, telling viewers."""
    reply = _reply_target(chat, p)
    markup = reply_markup(p)
    api.rate_limits.check(bot.me.id, chat.id, chat.is_group)
    if reply:
        content["reply_to_message"] = reply
    if _inline(markup):
        content["reply_markup"] = markup
    message = chat.add_message(bot.me, content, from_bot=True, parse_mode=parse_mode)
    if markup and not _inline(markup):
        message.keyboard = markup
    chat.action = None  # a message from the bot ends its "typing..." status, as in Telegram clients
    api.emit(bot, "message", chat, message)
    if chat.draft is not None:  # and its draft disappears
        chat.draft = None
        api.emit(bot, "draft", chat, draft=None)
    return message.data


async def send_message(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat = find_chat(api, bot, p.chat_id())
    text, entities, parse_mode = formatted(p)
    content: dict[str, Any] = {"text": text}
    if entities:
        content["entities"] = entities
    return deliver(api, bot, chat, p, content, parse_mode)


async def send_photo(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    return await _send_media(api, bot, p, "photo")


async def send_document(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    return await _send_media(api, bot, p, "document")


async def _send_media(api: LocalBotAPI, bot: BotAccount, p: Params, field: str) -> dict[str, Any]:
    chat = find_chat(api, bot, p.chat_id())
    caption, entities, parse_mode = formatted(p, "caption", "caption_entities", required=False)
    content: dict[str, Any] = {field: await media.from_params(api.files, api.http, p, field)}
    if caption:
        content["caption"] = caption
    if entities:
        content["caption_entities"] = entities
    return deliver(api, bot, chat, p, content, parse_mode)


def _message_to_edit(api: LocalBotAPI, bot: BotAccount, p: Params) -> tuple[Chat, StoredMessage]:
    if p.has("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = find_chat(api, bot, p.chat_id())
    message = chat.messages.get(p.int("message_id", required=True) or 0)
    if message is None or message.deleted:
        raise bad_request("message to edit not found")
    if not message.from_bot:
        raise bad_request("message can't be edited")
    return chat, message


def _apply_edit(
    api: LocalBotAPI,
    bot: BotAccount,
    chat: Chat,
    message: StoredMessage,
    changes: dict[str, Any],
    parse_mode: str | None,
) -> dict[str, Any]:
    fields = ("text", "entities", "caption", "caption_entities", "reply_markup")
    before = {k: message.data[k] for k in fields if k in message.data}
    after = {**before, **changes}
    after = {k: v for k, v in after.items() if v not in (None, [])}
    if after == {k: v for k, v in before.items() if v not in (None, [])}:
        raise bad_request(NOT_MODIFIED)
    api.rate_limits.check(bot.me.id, chat.id, chat.is_group)
    message.history.append(
        {
            **before,
            "parse_mode": message.parse_mode,
            "date": message.data.get("edit_date", message.data["date"]),
        }
    )
    for key in fields:
        message.data.pop(key, None)
    message.data.update(after)
    message.data["edit_date"] = int(time.time())
    message.parse_mode = parse_mode if ("text" in changes or "caption" in changes) else message.parse_mode
    message.updated = time.monotonic()
    api.emit(bot, "edit", chat, message)
    return message.data


async def edit_message_text(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat, message = _message_to_edit(api, bot, p)
    if "text" not in message.data:
        raise bad_request("there is no text in the message to edit")
    text, entities, parse_mode = formatted(p)
    changes = {"text": text, "entities": entities, "reply_markup": _inline(reply_markup(p))}
    return _apply_edit(api, bot, chat, message, changes, parse_mode)


async def edit_message_caption(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat, message = _message_to_edit(api, bot, p)
    if "text" in message.data:
        raise bad_request("there is no caption in the message to edit")
    caption, entities, parse_mode = formatted(p, "caption", "caption_entities", required=False)
    changes = {"caption": caption, "caption_entities": entities, "reply_markup": _inline(reply_markup(p))}
    return _apply_edit(api, bot, chat, message, changes, parse_mode)


async def edit_message_reply_markup(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat, message = _message_to_edit(api, bot, p)
    changes = {"reply_markup": _inline(reply_markup(p))}
    return _apply_edit(api, bot, chat, message, changes, message.parse_mode)


async def delete_message(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    chat = find_chat(api, bot, p.chat_id())
    message = chat.messages.get(p.int("message_id", required=True) or 0)
    if message is None or message.deleted:
        raise bad_request("message to delete not found")
    if chat.is_group and not message.from_bot and bot.me.id not in chat.admins:
        raise bad_request("message can't be deleted")
    message.deleted = True
    message.updated = time.monotonic()
    api.emit(bot, "delete", chat, message)
    return True


async def send_chat_action(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    chat = find_chat(api, bot, p.chat_id())
    action = p.str("action", required=True)
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    chat.action = action
    chat.action_until = time.monotonic() + ACTION_SECONDS
    api.emit(bot, "chat_action", chat, action=action)
    return True


MESSAGE_METHODS = {
    "sendMessage": send_message,
    "sendPhoto": send_photo,
    "sendDocument": send_document,
    "editMessageText": edit_message_text,
    "editMessageCaption": edit_message_caption,
    "editMessageReplyMarkup": edit_message_reply_markup,
    "deleteMessage": delete_message,
    "sendChatAction": send_chat_action,
}

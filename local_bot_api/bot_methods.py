"""Bot API methods about the bot itself: identity, updates, webhook, command menus, descriptions, files,
chats."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import CONFLICT_WEBHOOK, ApiError, bad_request
from .files import MAX_DOWNLOAD
from .params import Params
from .state import BotAccount, Webhook

if TYPE_CHECKING:
    from .server import LocalBotAPI

_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_SCOPES = {
    "default",
    "all_private_chats",
    "all_group_chats",
    "all_chat_administrators",
    "chat",
    "chat_administrators",
    "chat_member",
}
ScopeKey = tuple[str, int | None, int | None, str]
Handler = Callable[["LocalBotAPI", BotAccount, Params], Awaitable[Any]]


async def get_me(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    return bot.me_json()


async def get_updates(api: LocalBotAPI, bot: BotAccount, p: Params) -> list[dict[str, Any]]:
    if bot.webhook.url:
        raise ApiError(409, CONFLICT_WEBHOOK)
    limit = min(max(p.int("limit", default=100) or 100, 1), 100)
    timeout = max(p.float("timeout", 0.0), 0.0)
    bot.updates.set_allowed(p.json("allowed_updates"))
    return await bot.updates.poll(p.int("offset"), limit, timeout)


async def set_webhook(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    url = p.str("url") or ""
    if url and not url.startswith(("http://", "https://")):
        # Telegram insists on HTTPS and ports 443/80/88/8443; a local server must accept plain http too.
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = p.str("secret_token")
    if secret is not None and not _SECRET.match(secret):
        raise bad_request("bad webhook: Secret token contains unallowed characters")
    max_connections = p.int("max_connections", default=40) or 40
    if p.bool("drop_pending_updates"):
        bot.updates.drop_all()
    bot.updates.set_allowed(p.json("allowed_updates"))
    bot.webhook = Webhook(url=url, secret_token=secret, max_connections=max_connections)
    await api.restart_webhook(bot)
    return True


async def delete_webhook(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    if p.bool("drop_pending_updates"):
        bot.updates.drop_all()
    bot.webhook = Webhook()
    await api.restart_webhook(bot)
    return True


async def get_webhook_info(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    return bot.webhook.info(bot.updates.pending_count, bot.updates.allowed)


def language(language_code: str | None) -> str:
    """A two-letter ISO 639-1 code, or "" for every language without a setting of its own."""
    code = language_code or ""
    if code and not re.match(r"^[a-z]{2}$", code):
        raise bad_request("invalid language code specified")
    return code


def scope_key(scope: Any, language_code: str | None) -> ScopeKey:
    """Where a command list is stored: (scope type, chat_id, user_id, language code)."""
    language_ = language(language_code)
    if scope is None:
        return ("default", None, None, language_)
    if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
        raise bad_request("can't parse BotCommandScope JSON object")
    kind = scope["type"]
    chat_id = user_id = None
    if kind in ("chat", "chat_administrators", "chat_member"):
        try:
            chat_id = int(scope["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise bad_request("chat not found") from None
    if kind == "chat_member":
        try:
            user_id = int(scope["user_id"])
        except (KeyError, TypeError, ValueError):
            raise bad_request("invalid user_id specified") from None
    return (kind, chat_id, user_id, language_)


async def set_my_commands(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    commands = p.json("commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("too many commands specified")
    cleaned = []
    for item in commands:
        if not isinstance(item, dict) or not _COMMAND.match(str(item.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        description = str(item.get("description", ""))
        if not 1 <= len(description) <= 256:
            raise bad_request(
                "command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID"
            )
        cleaned.append({"command": item["command"], "description": description})
    key = scope_key(p.json("scope"), p.str("language_code"))
    if cleaned:
        bot.commands[key] = cleaned
    else:
        bot.commands.pop(key, None)
    api.emit(bot, "commands", None, scope=list(key))
    return True


async def get_my_commands(api: LocalBotAPI, bot: BotAccount, p: Params) -> list[dict[str, str]]:
    return bot.commands.get(scope_key(p.json("scope"), p.str("language_code")), [])


async def delete_my_commands(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    key = scope_key(p.json("scope"), p.str("language_code"))
    bot.commands.pop(key, None)
    api.emit(bot, "commands", None, scope=list(key))
    return True


async def get_file(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    record = api.files.get(p.str("file_id", required=True) or "")
    if record is None:
        raise bad_request("wrong file_id or the file is temporarily unavailable")
    if record.size > MAX_DOWNLOAD:
        raise bad_request("file is too big")
    return record.to_json()


def _chat(bot: BotAccount, p: Params):
    chat_id = p.chat_id()
    chat = bot.chats.get(chat_id) if isinstance(chat_id, int) else None
    if chat is None:
        raise bad_request("chat not found")
    return chat


async def get_chat(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat = _chat(bot, p)
    gifts = dict.fromkeys(
        ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"),
        False,
    )
    return {**chat.to_json(), "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}


async def get_chat_member(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, Any]:
    chat = _chat(bot, p)
    user_id = p.int("user_id", required=True)
    user = bot.me if user_id == bot.me.id else api.users.get(user_id or 0)
    if user is None:
        raise bad_request("PARTICIPANT_ID_INVALID")
    if chat.type == "private":
        member = user_id in (chat.id, bot.me.id)
        status = "kicked" if chat.blocked and user_id == bot.me.id else ("member" if member else "left")
    elif user_id not in chat.members:
        status = "left"
    else:
        status = "administrator" if user_id in chat.admins else "member"
    result: dict[str, Any] = {"status": status, "user": user.to_json()}
    if status == "kicked":
        result["until_date"] = 0
    if status == "administrator":
        rights = ("can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members")
        rights += ("can_promote_members", "can_change_info", "can_invite_users", "can_post_stories")
        rights += ("can_edit_stories", "can_delete_stories", "can_send_welcome_messages")
        result.update({"can_be_edited": False, "is_anonymous": False, **dict.fromkeys(rights, True)})
    return result


# What users see in an empty chat ("What can this bot do?") and on the bot's profile and share links.
DESCRIPTION_LIMITS = {"description": 512, "short_description": 120}


def _description_setter(kind: str) -> Handler:
    async def set_description(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
        key = (kind, language(p.str("language_code")))
        text = p.str(kind) or ""
        if len(text) > DESCRIPTION_LIMITS[kind]:
            raise bad_request(f"{kind.replace('_', ' ')} is too long")
        if text:
            bot.descriptions[key] = text
        else:
            bot.descriptions.pop(key, None)  # an empty text removes the one for that language
        api.emit(bot, "profile", None, field=kind, language_code=key[1])
        return True

    return set_description


def _description_getter(kind: str) -> Handler:
    async def get_description(api: LocalBotAPI, bot: BotAccount, p: Params) -> dict[str, str]:
        return {kind: bot.descriptions.get((kind, language(p.str("language_code"))), "")}

    return get_description


async def accept(api: LocalBotAPI, bot: BotAccount, p: Params) -> bool:
    """logOut, close and profile setters: nothing to do locally, Telegram answers true."""
    return True


BOT_METHODS = {
    "getMe": get_me,
    "getUpdates": get_updates,
    "setWebhook": set_webhook,
    "deleteWebhook": delete_webhook,
    "getWebhookInfo": get_webhook_info,
    "setMyCommands": set_my_commands,
    "getMyCommands": get_my_commands,
    "deleteMyCommands": delete_my_commands,
    "getFile": get_file,
    "getChat": get_chat,
    "getChatMember": get_chat_member,
    "logOut": accept,
    "close": accept,
    "setMyDescription": _description_setter("description"),
    "getMyDescription": _description_getter("description"),
    "setMyShortDescription": _description_setter("short_description"),
    "getMyShortDescription": _description_getter("short_description"),
    "setMyName": accept,
    "setChatMenuButton": accept,
}

"""The command menus (setMyCommands): everyone's, in English and Russian, and a longer one per admin chat."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault

from bot.i18n import Translator
from bot.locales import TEXTS

log = logging.getLogger(__name__)

USER_COMMANDS = ("start", "help", "new", "retry", "cancel", "settings", "forget")
ADMIN_COMMANDS = ("setlimit", "limits", "ban", "unban", "stats")


def _commands(language: str, names: tuple[str, ...]) -> list[BotCommand]:
    t = Translator(language)
    return [BotCommand(command=name, description=t(f"cmd.{name}")) for name in names]


async def set_user_menu(bot: Bot) -> None:
    for language in TEXTS:
        code = None if language == "en" else language  # English is the fallback for every other language
        await bot.set_my_commands(
            _commands(language, USER_COMMANDS), scope=BotCommandScopeDefault(), language_code=code
        )


async def set_admin_menu(bot: Bot, admin_id: int) -> bool:
    """The admin's private chat gets user + admin commands. Fails (False) until the admin has written to the
    bot once, so /start sets it again."""
    try:
        for language in TEXTS:
            code = None if language == "en" else language
            await bot.set_my_commands(
                _commands(language, USER_COMMANDS + ADMIN_COMMANDS),
                scope=BotCommandScopeChat(chat_id=admin_id),
                language_code=code,
            )
    except TelegramAPIError as exc:
        log.info("admin menu not set yet for an admin chat: %s", exc.message)
        return False
    return True


async def set_descriptions(bot: Bot) -> None:
    """What Telegram shows in an empty chat with the bot (description) and on its profile and in shares
    (short description), in each interface language."""
    try:
        for language in TEXTS:
            code = None if language == "en" else language
            t = Translator(language)
            await bot.set_my_description(description=t("bot.description"), language_code=code)
            await bot.set_my_short_description(short_description=t("bot.short_description"), language_code=code)
    except TelegramAPIError as exc:  # decoration: a server without these methods must not stop the bot
        log.warning("bot descriptions not set: %s", exc.message)

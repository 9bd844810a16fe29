"""/start, /help, /new, /retry, /cancel: the commands everyone has."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.i18n import Translator
from bot.identity import sender_id, sender_name
from bot.menus import set_admin_menu
from bot.services.access import AccessControl
from bot.services.conversation import Conversation
from bot.services.jobs import JobSubmitter
from bot.services.outbox import Outbox
from bot.services.turns import Origin, TurnService
from bot.settings import Settings

DEMO_PRESET = "demo"  # the worker preset of the model trained on coloured shapes (docs/demo-model.md)


def create_router() -> Router:
    router = Router(name="commands")

    @router.message(CommandStart())
    async def start(
        message: Message, bot: Bot, outbox: Outbox, access: AccessControl, queue: JobSubmitter, t: Translator
    ) -> None:
        text = t("start", name=sender_name(message))
        if DEMO_PRESET in await queue.presets():
            text += "\n\n" + t("start.demo")
        admin = access.is_admin(sender_id(message))
        if admin:
            text += "\n\n" + t("start.admin")
        await outbox.reply(message, text)
        if admin and message.chat.type == "private":
            await set_admin_menu(bot, sender_id(message))  # the chat may not have existed at startup

    @router.message(Command("help"))
    async def help_(
        message: Message,
        outbox: Outbox,
        access: AccessControl,
        queue: JobSubmitter,
        settings: Settings,
        t: Translator,
    ) -> None:
        (count, window), _ = await access.effective_limit(sender_id(message))
        await outbox.reply(
            message,
            t(
                "help",
                max_images=settings.max_images_per_turn,
                max_mb=settings.max_file_bytes // 2**20,
                max_chars=settings.text_limit_for(await queue.model_context()),
                max_pages=settings.document_max_pages,
                limit=t.limit(count, window),
            ),
        )

    @router.message(Command("new"))
    async def new_dialog(message: Message, outbox: Outbox, conversation: Conversation, t: Translator) -> None:
        stopped = await conversation.start_afresh(message.chat.id, sender_id(message))
        await outbox.reply(message, t("new.cancelled" if stopped else "new.done"))

    @router.message(Command("retry"))
    async def retry(message: Message, turns: TurnService, t: Translator) -> None:
        origin = Origin.of(message)
        await turns.retry(origin.chat_id, origin.user_id, origin.thread_id, origin.reply_to, t)

    @router.message(Command("cancel"))
    async def cancel(message: Message, outbox: Outbox, conversation: Conversation, t: Translator) -> None:
        # Nothing is sent on success: the answer's own message turns into "Stopped" within a second.
        if not await conversation.stop(sender_id(message)):
            await outbox.reply(message, t("cancel.nothing"))

    return router

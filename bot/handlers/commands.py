"""/start, /help, /new, /retry, /cancel: the commands everyone has."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.i18n import Translator
from bot.identity import sender_id, sender_name
from bot.menus import set_admin_menu
from bot.services.access import AccessControl
from bot.services.dialogs import DialogStore
from bot.services.jobs import JobSubmitter
from bot.services.outbox import Outbox
from bot.services.turns import TurnService
from bot.settings import Settings


async def _cancel_inflight(message: Message, access: AccessControl, queue: JobSubmitter) -> bool:
    """Ask the worker to stop the user's answer in flight (the delivery task then shows "Stopped")."""
    record = await access.inflight(sender_id(message))
    if record is None:
        return False
    await queue.cancel(record["job_id"])
    return True


def create_router() -> Router:
    router = Router(name="commands")

    @router.message(CommandStart())
    async def start(message: Message, bot: Bot, outbox: Outbox, access: AccessControl, t: Translator) -> None:
        await outbox.reply(message, t("start", name=sender_name(message)))
        if access.is_admin(sender_id(message)) and message.chat.type == "private":
            await set_admin_menu(bot, sender_id(message))  # the chat may not have existed at startup

    @router.message(Command("help"))
    async def help_(
        message: Message, outbox: Outbox, access: AccessControl, settings: Settings, t: Translator
    ) -> None:
        (count, window), _ = await access.effective_limit(sender_id(message))
        await outbox.reply(
            message,
            t(
                "help",
                max_images=settings.max_images_per_turn,
                max_mb=settings.max_file_bytes // 2**20,
                limit=t.limit(count, window),
            ),
        )

    @router.message(Command("new"))
    async def new_dialog(
        message: Message,
        outbox: Outbox,
        access: AccessControl,
        queue: JobSubmitter,
        dialogs: DialogStore,
        t: Translator,
    ) -> None:
        cancelled = await _cancel_inflight(message, access, queue)
        await dialogs.reset(message.chat.id, sender_id(message))
        await outbox.reply(message, t("new.cancelled" if cancelled else "new.done"))

    @router.message(Command("retry"))
    async def retry(message: Message, turns: TurnService, t: Translator) -> None:
        await turns.retry(message, t)

    @router.message(Command("cancel"))
    async def cancel(
        message: Message, outbox: Outbox, access: AccessControl, queue: JobSubmitter, t: Translator
    ) -> None:
        # Nothing is sent on success: the answer's own message turns into "Stopped" within a second.
        if not await _cancel_inflight(message, access, queue):
            await outbox.reply(message, t("cancel.nothing"))

    return router

"""/forget: after a confirmation, delete the user's dialogs, settings and the pictures only they sent."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.i18n import Translator
from bot.identity import sender_id
from bot.keyboards import ForgetChoice, forget_keyboard
from bot.services.forget import UserEraser
from bot.services.outbox import Outbox


def create_router() -> Router:
    router = Router(name="forget")

    @router.message(Command("forget"))
    async def ask(message: Message, outbox: Outbox, t: Translator) -> None:
        thread_id = message.message_thread_id if message.is_topic_message else None
        await outbox.send(
            message.chat.id,
            t("forget.confirm"),
            reply_to=message.message_id,
            thread_id=thread_id,
            keyboard=forget_keyboard(t, sender_id(message)),
        )

    @router.callback_query(ForgetChoice.filter())
    async def confirmed(
        query: CallbackQuery, callback_data: ForgetChoice, eraser: UserEraser, outbox: Outbox, t: Translator
    ) -> None:
        if query.from_user.id != callback_data.owner:
            await query.answer(t("button.not_yours"))
            return
        await query.answer()
        if callback_data.confirm:
            await eraser.forget(callback_data.owner)
        if query.message is not None and hasattr(query.message, "chat"):  # the question loses its buttons
            text = t("forget.done" if callback_data.confirm else "forget.kept")
            await outbox.edit(query.message.chat.id, query.message.message_id, text)

    return router

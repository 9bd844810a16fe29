"""The buttons under answers (⏹ Stop, 🔄 Regenerate, ✨ New dialog, the "replaced" mark) and Telegram's own
stop button on a streamed draft (`stopped_message_generation`).

Only the person who asked may press an answer's buttons; every press is answered (Telegram shows a spinner
until it is); a press on buttons that are no longer the live ones says so and takes them away.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, MessageGenerationStopped

from bot.i18n import Translator
from bot.keyboards import AnswerAction, short_job
from bot.observability import BotMetrics
from bot.services.access import AccessControl
from bot.services.answers import AnswerRegistry
from bot.services.conversation import Conversation
from bot.services.outbox import Outbox
from bot.services.turns import TurnService


def create_router() -> Router:
    router = Router(name="buttons")

    @router.callback_query(AnswerAction.filter())
    async def pressed(
        query: CallbackQuery,
        callback_data: AnswerAction,
        access: AccessControl,
        answers: AnswerRegistry,
        conversation: Conversation,
        turns: TurnService,
        outbox: Outbox,
        metrics: BotMetrics,
        t: Translator,
    ) -> None:
        metrics.buttons.labels(action=callback_data.action).inc()
        message = query.message
        if query.from_user.id != callback_data.owner:
            await query.answer(t("button.not_yours"))
            return
        if message is None or not hasattr(message, "chat"):  # too old: Telegram no longer sends it
            await query.answer(t("button.stale"))
            return
        chat_id, owner = message.chat.id, callback_data.owner
        if callback_data.action == "old":
            await query.answer(t("button.replaced"))
            return
        if callback_data.action == "stop":
            stopped = await conversation.stop(owner, callback_data.job)
            await query.answer(t("button.stopping") if stopped else t("button.stale"))
            if not stopped:
                await outbox.set_keyboard(chat_id, message.message_id, None)
            return
        latest = await answers.latest(chat_id, owner)
        if latest is None or short_job(latest["job_id"]) != callback_data.job:
            await query.answer(t("button.stale"))
            await outbox.set_keyboard(chat_id, message.message_id, None)
            return
        thread_id = message.message_thread_id if getattr(message, "is_topic_message", False) else None
        if callback_data.action == "regen":
            await query.answer()
            await turns.retry(chat_id, owner, thread_id, message.message_id, t)
        elif callback_data.action == "new":
            await conversation.start_afresh(chat_id, owner)
            await query.answer()
            await outbox.send(chat_id, t("new.done"), thread_id=thread_id)

    @router.callback_query()
    async def unknown(query: CallbackQuery, t: Translator) -> None:
        await query.answer(t("button.stale"))  # buttons of an older version of the bot

    @router.stopped_message_generation()
    async def draft_stopped(event: MessageGenerationStopped, access: AccessControl, conversation: Conversation) -> None:
        # Drafts exist in private chats only, where the chat is the user.
        record = await access.inflight(event.chat.id)
        if record is not None and record.get("draft_id") == event.draft_id:
            await conversation.stop(event.chat.id, record["job_id"])

    return router

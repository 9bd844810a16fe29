"""/settings: answer length, creativity and interface language, with inline buttons, per user."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.i18n import Translator, pick_language
from bot.identity import sender_id
from bot.keyboards import SettingsChoice, settings_keyboard
from bot.services.outbox import Outbox
from bot.services.preferences import OPTIONS, Preferences


def _summary(t: Translator, choices: dict[str, str]) -> str:
    return t(
        "settings.summary",
        **{field: t(f"settings.{field}.{choices[field]}") for field in OPTIONS},
    )


def create_router() -> Router:
    router = Router(name="settings")

    @router.message(Command("settings"))
    async def show(message: Message, preferences: Preferences, outbox: Outbox, t: Translator) -> None:
        owner = sender_id(message)
        choices = await preferences.get(owner)
        thread_id = message.message_thread_id if message.is_topic_message else None
        await outbox.send(
            message.chat.id,
            _summary(t, choices),
            reply_to=message.message_id,
            thread_id=thread_id,
            keyboard=settings_keyboard(t, owner, choices, OPTIONS),
        )

    @router.callback_query(SettingsChoice.filter())
    async def choose(
        query: CallbackQuery, callback_data: SettingsChoice, preferences: Preferences, outbox: Outbox, t: Translator
    ) -> None:
        owner = callback_data.owner
        if query.from_user.id != owner:
            await query.answer(t("button.not_yours"))
            return
        if not await preferences.choose(owner, callback_data.field, callback_data.value):
            await query.answer(t("button.stale"))
            return
        choices = await preferences.get(owner)
        if callback_data.field == "language":  # answer in the language just chosen
            t = Translator(choices["language"] if choices["language"] != "auto" else pick_language(
                query.from_user.language_code
            ))
        await query.answer(t("settings.saved"))
        if query.message is not None and hasattr(query.message, "chat"):
            await outbox.edit(
                query.message.chat.id,
                query.message.message_id,
                _summary(t, choices),
                keyboard=settings_keyboard(t, owner, choices, OPTIONS),
            )

    return router

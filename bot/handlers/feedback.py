"""👍/👎 on an answer: counted in metrics (`bot_feedback_total{reaction}`); other reactions are ignored.

Telegram sends `message_reaction` only when the bot asks for it in allowed_updates (and, in groups, only to an
administrator bot); the update does not say whose message it is, so answers are looked up in Redis."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import MessageReactionUpdated

from bot.observability import BotMetrics
from bot.services.answers import AnswerRegistry

FEEDBACK = {"👍": "up", "👎": "down"}


def create_router() -> Router:
    router = Router(name="feedback")

    @router.message_reaction()
    async def reacted(event: MessageReactionUpdated, answers: AnswerRegistry, metrics: BotMetrics) -> None:
        before = {getattr(r, "emoji", None) for r in event.old_reaction}
        added = [FEEDBACK[e] for r in event.new_reaction if (e := getattr(r, "emoji", None)) in FEEDBACK and e not in before]
        if added and await answers.is_answer(event.chat.id, event.message_id):
            for label in added:
                metrics.feedback.labels(reaction=label).inc()

    return router

"""Which message is whose latest answer: its buttons are the live ones, and older ones are taken away.

When a new turn starts, the previous answer's 🔄/✨ buttons are removed (or, for /retry, replaced by a mark
saying the answer was replaced), so only the newest answer in a chat has buttons that do something. Every
answer message is also remembered for a while, so a 👍/👎 reaction on it counts as feedback.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from bot import keys
from bot.i18n import Translator
from bot.keyboards import replaced_keyboard
from bot.services.outbox import Outbox


class AnswerRegistry:
    def __init__(self, redis: Redis, outbox: Outbox, ttl_s: int):
        self.redis = redis
        self.outbox = outbox
        self.ttl_s = ttl_s

    async def remember(self, record: dict[str, Any], message_ids: list[int]) -> None:
        chat_id, user_id = record["chat_id"], record["user_id"]
        latest = {"job_id": record["job_id"], "message_id": message_ids[-1], "question_id": record.get("reply_to")}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.last_answer(chat_id, user_id), json.dumps(latest), ex=self.ttl_s)
            for message_id in message_ids:
                pipe.set(keys.answer_message(chat_id, message_id), user_id, ex=self.ttl_s)
            await pipe.execute()

    async def latest(self, chat_id: int, user_id: int) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.last_answer(chat_id, user_id))
        return json.loads(raw) if raw else None

    async def retire(self, chat_id: int, user_id: int, t: Translator | None = None, replaced: bool = False) -> None:
        """Take the buttons off the previous answer; `replaced` (a retry) leaves a mark saying so."""
        previous = await self.latest(chat_id, user_id)
        if previous is None:
            return
        await self.redis.delete(keys.last_answer(chat_id, user_id))
        mark = replaced_keyboard(t, user_id, previous["job_id"]) if replaced and t else None
        await self.outbox.set_keyboard(chat_id, previous["message_id"], mark)

    async def is_answer(self, chat_id: int, message_id: int) -> bool:
        return bool(await self.redis.exists(keys.answer_message(chat_id, message_id)))

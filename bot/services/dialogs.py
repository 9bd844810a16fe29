"""Dialogs per (chat, user) in Redis, in the wire protocol's message shape, and the images they refer to.

A dialog is a LIST of JSON messages, oldest first, holding only finished exchanges (question + answer): the
question being answered lives in the in-flight record until its answer is done. So a dialog never has two
user turns in a row, a cancelled or failed answer leaves no half-exchange behind, and trimming by whole
exchanges keeps the roles alternating.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.asyncio import Redis

from bot import keys
from model.protocol import image_key_for

Message = dict[str, Any]

# Append an exchange only if the dialog is still the one the question was asked in (/new replaces the
# session id): an answer that arrives after /new must not leak into the fresh dialog.
_APPEND = """
local current = redis.call('GET', KEYS[2])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class DialogStore:
    def __init__(self, redis: Redis, max_turns: int, ttl_s: int, image_ttl_s: int):
        self.redis = redis
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.image_ttl_s = image_ttl_s
        self._append = redis.register_script(_APPEND)

    async def session(self, chat_id: int, user_id: int) -> str:
        """The current dialog's id, created on first use."""
        key = keys.dialog_session(chat_id, user_id)
        await self.redis.set(key, uuid.uuid4().hex, ex=self.ttl_s, nx=True)
        value = await self.redis.get(key)
        return value.decode() if value else uuid.uuid4().hex  # expired in between: a fresh dialog anyway

    async def messages(self, chat_id: int, user_id: int) -> list[Message]:
        raw = await self.redis.lrange(keys.dialog(chat_id, user_id), 0, -1)
        return [json.loads(item) for item in raw]

    async def append_exchange(
        self, chat_id: int, user_id: int, session: str, question: Message, answer: str
    ) -> bool:
        """Store a finished question+answer; False when the dialog was reset meanwhile."""
        reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        stored = await self._append(
            keys=[keys.dialog(chat_id, user_id), keys.dialog_session(chat_id, user_id)],
            args=[
                session,
                self.ttl_s,
                2 * self.max_turns,
                json.dumps(question, ensure_ascii=False),
                json.dumps(reply, ensure_ascii=False),
            ],
        )
        return bool(stored)

    async def reset(self, chat_id: int, user_id: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.dialog(chat_id, user_id), keys.last_question(chat_id, user_id))
            pipe.set(keys.dialog_session(chat_id, user_id), uuid.uuid4().hex, ex=self.ttl_s)
            await pipe.execute()

    async def drop_last_exchange_if(self, chat_id: int, user_id: int, question: Message) -> None:
        """For /retry: forget the answer being replaced (and its question, which is asked again)."""
        key = keys.dialog(chat_id, user_id)
        tail = await self.redis.lrange(key, -2, -1)
        if len(tail) == 2 and json.loads(tail[0]) == question:
            await self.redis.ltrim(key, 0, -3)

    async def remember_question(self, chat_id: int, user_id: int, question: Message) -> None:
        await self.redis.set(
            keys.last_question(chat_id, user_id), json.dumps(question, ensure_ascii=False), ex=self.ttl_s
        )

    async def last_question(self, chat_id: int, user_id: int) -> Message | None:
        raw = await self.redis.get(keys.last_question(chat_id, user_id))
        return json.loads(raw) if raw else None

    # --- images -------------------------------------------------------------------------------------------

    async def store_image(self, data: bytes, sender: int) -> str:
        """SET omnifusion:image:<sha256> once; a photo sent again only has its TTL refreshed. Who sent it is
        kept beside it, so /forget can delete the pictures nobody else sent."""
        key = image_key_for(data)
        if not await self.redis.expire(key, self.image_ttl_s):
            await self.redis.set(key, data, ex=self.image_ttl_s)
        async with self.redis.pipeline(transaction=False) as pipe:
            for set_key, member in ((keys.pictures_of(sender), key), (keys.picture_senders(key), sender)):
                pipe.sadd(set_key, member)
                pipe.expire(set_key, self.image_ttl_s)
            await pipe.execute()
        return key

    async def keep_images_alive(self, messages: list[Message]) -> list[str]:
        """Refresh the TTL of every image the dialog refers to; returns the keys that are already gone."""
        image_keys = sorted(
            {part["key"] for m in messages for part in m["content"] if part["type"] == "image"}
        )
        if not image_keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in image_keys:
                pipe.expire(key, self.image_ttl_s)
            alive = await pipe.execute()
        return [key for key, ok in zip(image_keys, alive, strict=True) if not ok]

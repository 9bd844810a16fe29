"""/forget: delete everything the bot keeps about a user.

Deleted: dialogs and their sessions in every chat, the last question, the latest answer and the markers of
the user's answer messages, /settings, a message kept for later, notices, the user's job entries in the job
stream (they hold the dialog's text), their membership in the /stats sets, and the pictures that only they
sent (a picture someone else sent too stays for that person).

Kept, on purpose: the rate-limit window (`rate:<user>`, it expires with the window; otherwise /forget would
reset the limit) and what an administrator decided (a ban, a per-user limit).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from bot import keys
from bot.services.access import AccessControl
from bot.services.conversation import Conversation
from bot.services.delivery import AnswerDelivery
from model import protocol

KEPT_KINDS = frozenset({"rate", "limit"})
CHAT_KEYED = frozenset({"dialog", "session", "last", "answer"})  # <kind>:<chat>:<user>
ANSWER_WAIT_S = 30.0  # an answer in flight is stopped first; its delivery must end before the dialog goes


class UserEraser:
    def __init__(self, redis: Redis, access: AccessControl, conversation: Conversation, delivery: AnswerDelivery):
        self.redis = redis
        self.delivery = delivery
        self.access = access
        self.conversation = conversation

    async def forget(self, user_id: int) -> None:
        await self.access.drop_waiting(user_id)
        stopped = await self.conversation.stop(user_id)
        if stopped:  # the answer being written would be stored after us: let its delivery end first
            await self.delivery.wait_done(stopped, ANSWER_WAIT_S)
        doomed, chats = [], {user_id} if user_id > 0 else set()
        async for key in self.redis.scan_iter(match=f"{keys.BOT}:*:{user_id}", count=500):
            parts = key.decode()[len(keys.BOT) + 1 :].split(":")
            if parts[0] in KEPT_KINDS:
                continue
            if parts[0] in CHAT_KEYED and len(parts) == 3:
                chats.add(int(parts[1]))
            doomed.append(key)
        for chat_id in chats:
            async for key in self.redis.scan_iter(match=keys.answer_message(chat_id, "*"), count=500):
                if (await self.redis.get(key) or b"").decode() == str(user_id):
                    doomed.append(key)
        await self._forget_pictures(user_id)
        jobs = [entry.decode() for entry in await self.redis.lrange(keys.jobs_of(user_id), 0, -1)]
        days = [(datetime.now(UTC) - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(3)]
        async with self.redis.pipeline(transaction=False) as pipe:
            if jobs:
                pipe.xdel(protocol.JOBS_STREAM, *jobs)
            pipe.srem(keys.USERS, user_id)
            for day in days:
                pipe.srem(keys.users_on(day), user_id)
            if doomed:
                pipe.delete(*doomed)
            await pipe.execute()

    async def _forget_pictures(self, user_id: int) -> None:
        for image_key in await self.redis.smembers(keys.pictures_of(user_id)):
            senders = keys.picture_senders(image_key.decode())
            await self.redis.srem(senders, user_id)
            if not await self.redis.scard(senders):
                await self.redis.delete(image_key, senders)

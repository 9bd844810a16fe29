"""From the user's message(s) to a queued job: check, admit, show a placeholder, fetch images, queue.

Order matters. Cheap checks first (content, sizes, text length) so a refusal costs nothing; then admission
(ban, one answer in flight, rate limit: atomic, in Redis); then the placeholder, at once; only then the slow
part (downloading and decoding images), so a user is never left staring at nothing. A turn that fails after
admission (a broken image) is refunded: it does not count against the limit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiogram import Bot
from aiogram.types import Message

from bot.formatting import is_blank
from bot.i18n import Translator
from bot.identity import sender_id
from bot.observability import BotMetrics, UserHasher
from bot.services.access import AccessControl
from bot.services.delivery import AnswerDelivery
from bot.services.dialogs import DialogStore
from bot.services.jobs import JobSubmitter
from bot.services.outbox import ChatGone, Outbox
from bot.services.pictures import ImageRef, PictureFetcher, TurnProblem
from bot.services.retrying import until_redis_answers
from bot.settings import Settings
from model import protocol

log = logging.getLogger(__name__)


class TurnService:
    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        access: AccessControl,
        dialogs: DialogStore,
        queue: JobSubmitter,
        delivery: AnswerDelivery,
        outbox: Outbox,
        metrics: BotMetrics,
        hash_user: UserHasher,
    ):
        self.bot = bot
        self.settings = settings
        self.access = access
        self.dialogs = dialogs
        self.queue = queue
        self.delivery = delivery
        self.outbox = outbox
        self.metrics = metrics
        self.hash_user = hash_user
        self.pictures = PictureFetcher(bot, settings, dialogs, metrics, outbox)

    # --- entry points -----------------------------------------------------------------------------------

    async def ask(self, messages: list[Message], t: Translator) -> None:
        """A new turn from a message, or from an album's messages."""
        first = messages[0]
        try:
            images, text = await self._collect(messages)
        except TurnProblem as problem:
            self.metrics.refusals.labels(reason=problem.key).inc()
            await self._reply(first, t(problem.key, **problem.fields))
            return
        record = await self._admit(first, t)
        if record is None:
            return
        async with self._released_on_failure(record, t):
            try:
                parts = [
                    {"type": "image", "key": await self.pictures.fetch(first.chat.id, image)} for image in images
                ]
            except TurnProblem as problem:
                log.info("turn refused: %s", problem.key, extra={"user": self.hash_user(sender_id(first))})
                await self._give_up(record, t(problem.key, **problem.fields))
                return
            # a photo alone: the usual wish is a description, and follow-ups can build on it
            parts.append({"type": "text", "text": text or t("default_question")})
            await self._queue(record, {"role": "user", "content": parts})

    async def retry(self, message: Message, t: Translator) -> None:
        question = await self.dialogs.last_question(message.chat.id, sender_id(message))
        if question is None:
            await self._reply(message, t("retry.nothing"))
            return
        record = await self._admit(message, t)
        if record is None:
            return
        async with self._released_on_failure(record, t):
            await self.dialogs.drop_last_exchange_if(message.chat.id, sender_id(message), question)
            await self._queue(record, question)

    @contextlib.asynccontextmanager
    async def _released_on_failure(self, record: dict[str, Any], t: Translator) -> AsyncIterator[None]:
        """Between admission and the delivery task, a failure (Redis down, a bug) must not leave the user
        "busy" until the in-flight record expires: log it, undo the admission, and say so in the placeholder
        (once: the error is handled here, not again by the dispatcher's error handler)."""
        try:
            yield
        except Exception:
            log.exception(
                "turn failed before it was queued", extra={"user": self.hash_user(record["user_id"])}
            )
            self.metrics.errors.labels(where="turn").inc()
            # Redis may be what failed; the in-flight record's TTL is then the last resort.
            with contextlib.suppress(Exception):
                await self._give_up(record, t("answer.failed"))

    # --- steps ------------------------------------------------------------------------------------------

    async def _collect(self, messages: list[Message]) -> tuple[list[ImageRef], str]:
        images: list[ImageRef] = []
        texts: list[str] = []
        unsupported: str | None = None
        for message in messages:
            if message.photo:
                images.append(self.pictures.from_photo(message))
            elif message.document:
                images.append(self.pictures.from_document(message))
            elif message.text is None and message.caption is None:
                unsupported = "unsupported.other"
            if text := (message.text or message.caption or "").strip():
                texts.append(text)
        reply = messages[0].reply_to_message
        if not images and reply and reply.photo and reply.from_user and reply.from_user.id != self.bot.id:
            images.append(self.pictures.from_photo(reply))  # "@bot what is this?" in reply to someone's photo
        text = await self._without_mention("\n".join(texts))
        if is_blank(text):  # zero-width characters only: no question (a photo then gets the default one)
            text = ""
        if not images and not text:
            raise TurnProblem(unsupported or "empty_turn")
        if len(text) > self.settings.max_text_chars:
            raise TurnProblem("text_too_long", length=len(text), max_chars=self.settings.max_text_chars)
        if len(images) > self.settings.max_images_per_turn:
            raise TurnProblem("too_many_images", max_images=self.settings.max_images_per_turn)
        return images, text

    async def _without_mention(self, text: str) -> str:
        me = await self.bot.me()
        if me.username:
            text = re.sub(rf"@{re.escape(me.username)}\b", "", text, flags=re.IGNORECASE)
        return text.strip()

    async def _admit(self, message: Message, t: Translator) -> dict[str, Any] | None:
        """The in-flight record when the turn may go ahead; otherwise tells the user why not."""
        user_id = sender_id(message)  # a channel posting in a group is a sender of its own
        thread_id = message.message_thread_id if message.is_topic_message else None
        record = {
            "job_id": uuid.uuid4().hex,
            "user_id": user_id,
            "chat_id": message.chat.id,
            "thread_id": thread_id,
            "reply_to": message.message_id,
            "lang": t.language,
            "received": time.time(),
            "message_ids": [],
            "entry_id": None,
        }
        ttl = int(self.settings.job_timeout_s) + 600
        admission = await self.access.admit(user_id, record, ttl)
        if admission.ok:
            try:
                record["message_ids"] = [
                    await self.outbox.send(
                        message.chat.id,
                        t("status.thinking"),
                        reply_to=message.message_id,
                        thread_id=thread_id,
                    )
                ]
                await self.access.update_inflight(record)
            except ChatGone:
                await self._give_up(record, "")
                return None
            except Exception:  # Redis or Telegram failing right after admission: never leave the user "busy"
                log.exception("turn failed right after admission", extra={"user": self.hash_user(user_id)})
                self.metrics.errors.labels(where="turn").inc()
                await self._give_up(record, t("answer.failed"))
                return None
            return record
        self.metrics.refusals.labels(reason=admission.verdict).inc()
        if not admission.tell:  # told already: a flood of messages must not make the bot flood back
            return None
        if admission.verdict == "busy":
            await self._reply(message, t("busy"))
        elif admission.verdict == "limited":
            await self._reply(
                message, t("limited", limit=t.limit(*admission.limit), wait=t.duration(admission.retry_in_s))
            )
        elif admission.verdict == "banned":
            await self._reply(message, t("banned"))
        return None

    async def _queue(self, record: dict[str, Any], question: dict[str, Any]) -> None:
        chat_id, user_id = record["chat_id"], record["user_id"]
        history = await self.dialogs.messages(chat_id, user_id)
        gone = set(await self.dialogs.keep_images_alive([*history, question]))
        if gone & {part.get("key") for part in question["content"]}:
            t = Translator(record["lang"])
            await self._give_up(record, t("error.image_missing"))
            return
        messages = [self._without_images(m, gone) for m in history] + [question]
        if self.settings.system_prompt:
            messages.insert(
                0, {"role": "system", "content": [{"type": "text", "text": self.settings.system_prompt}]}
            )
        job = protocol.new_job(
            messages, self.settings.generation_params, self.settings.job_timeout_s, job_id=record["job_id"]
        )
        record.update(
            question=question, session=await self.dialogs.session(chat_id, user_id), deadline=job.deadline
        )
        await self.dialogs.remember_question(chat_id, user_id, question)
        record["entry_id"] = await self.queue.submit(job)
        await self.access.update_inflight(record)
        await self.access.record_turn(user_id)
        self.metrics.turns.inc()
        self.delivery.start(record)

    @staticmethod
    def _without_images(message: dict[str, Any], gone: set[str]) -> dict[str, Any]:
        """An expired picture in old history must not fail the whole job (`image_missing`): drop it."""
        if not gone:
            return message
        content = [p for p in message["content"] if p.get("type") != "image" or p.get("key") not in gone]
        return {**message, "content": content or [{"type": "text", "text": ""}]}

    async def _give_up(self, record: dict[str, Any], text: str) -> None:
        """The turn will not be queued: tell the user (in the placeholder), free them, refund the turn.
        Telling is best effort; freeing waits out a Redis outage, or the user would stay "busy"."""
        try:
            for message_id in record["message_ids"][:1] if text else []:
                if not await self.outbox.edit(record["chat_id"], message_id, text):
                    await self.outbox.send(record["chat_id"], text, reply_to=record["reply_to"])
        except ChatGone:
            pass
        except Exception:
            log.warning("could not tell the user the turn failed", exc_info=True)
        user_id, job_id = record["user_id"], record["job_id"]
        await until_redis_answers("freeing the user", lambda: self.access.release(user_id, job_id))
        await until_redis_answers("refunding the turn", lambda: self.access.refund(user_id, job_id))

    async def _reply(self, message: Message, text: str) -> None:
        await self.outbox.reply(message, text)

"""From the user's message(s) to a queued job: check, admit, show a sign of life, fetch files, queue.

Order matters. Cheap checks first (content, sizes, text length) so a refusal costs nothing; then admission
(ban, one answer in flight, rate limit: atomic, in Redis); then a sign of life, at once (a draft in private
chats, a placeholder message elsewhere, and 👀 on the message); only then the slow part (downloading and
decoding pictures, reading documents), so a user is never left staring at nothing. A turn that fails after
admission (a broken image) is refunded: it does not count against the limit.

A message sent while the user's answer is being written is kept as their next turn (one at most) and asked
as soon as that answer is finished.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.types import Message

from bot.i18n import Translator
from bot.identity import sender_id
from bot.keyboards import stop_keyboard
from bot.observability import BotMetrics, UserHasher
from bot.services.access import AccessControl
from bot.services.answers import AnswerRegistry
from bot.services.delivery import AnswerDelivery
from bot.services.dialogs import DialogStore
from bot.services.downloads import TurnProblem
from bot.services.jobs import JobSubmitter
from bot.services.outbox import ChatGone, DraftsUnavailable, Outbox, Skipped
from bot.services.preferences import Preferences
from bot.services.retrying import until_redis_answers
from bot.services.turn_content import ContentCollector
from bot.settings import Settings
from model import protocol

log = logging.getLogger(__name__)

RECEIVED = "👀"  # the reaction that says "got it" on the user's message


@dataclass
class Origin:
    """Where a turn comes from and where its answer goes."""

    chat_id: int
    user_id: int
    reply_to: int  # the message the answer replies to (quotes): the question
    thread_id: int | None = None

    @classmethod
    def of(cls, message: Message) -> Origin:
        thread_id = message.message_thread_id if message.is_topic_message else None
        # a channel posting in a group is a sender of its own
        return cls(message.chat.id, sender_id(message), message.message_id, thread_id)


def draft_id_for(job_id: str) -> int:
    return int(job_id[:7], 16) + 1  # non-zero, and fits any integer type a Bot API server may use


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
        answers: AnswerRegistry,
        preferences: Preferences,
        content: ContentCollector,
    ):
        self.bot = bot
        self.answers = answers
        self.preferences = preferences
        self.content = content
        self.settings = settings
        self.access = access
        self.dialogs = dialogs
        self.queue = queue
        self.delivery = delivery
        self.outbox = outbox
        self.metrics = metrics
        self.hash_user = hash_user
        delivery.next_turn = self.run_waiting

    # --- entry points -----------------------------------------------------------------------------------

    async def ask(self, messages: list[Message], t: Translator, fresh: bool = True) -> None:
        """A new turn from a message, an album's messages or a paste's parts. `fresh`: just received (not
        a turn that waited), so it may be kept for later and gets its 👀."""
        first = messages[0]
        try:
            found = await self.content.collect(messages)
        except TurnProblem as problem:
            self.metrics.refusals.labels(reason=problem.key).inc()
            await self._reply(first, t(problem.key, **problem.fields))
            return
        later = {"messages": [m.model_dump(mode="json", exclude_none=True) for m in messages]} if fresh else None
        record, verdict = await self._admit(Origin.of(first), t, later)
        if fresh and verdict in ("ok", "queued"):
            await self.outbox.react(first.chat.id, first.message_id, RECEIVED)
        if record is None:
            return
        async with self._released_on_failure(record, t):
            try:
                turn = await self.content.parts(found, first.chat.id, record["user_id"], t)
            except TurnProblem as problem:
                log.info("turn refused: %s", problem.key, extra={"user": self.hash_user(record["user_id"])})
                await self._give_up(record, t(problem.key, **problem.fields))
                return
            for note in turn.notes:
                await self._reply(first, note)
            await self._queue(record, {"role": "user", "content": turn.content}, t, replacing=False)

    async def run_waiting(self, user_id: int) -> None:
        """The answer before it is done: ask the turn the user sent meanwhile, if any."""
        waiting = await self.access.take_waiting(user_id)
        if waiting is None:
            return
        messages = [Message.model_validate(m, context={"bot": self.bot}) for m in waiting["messages"]]
        language = await self.preferences.language(user_id) or waiting.get("lang")
        await self.ask(messages, Translator(language or "en"), fresh=False)

    async def retry(self, chat_id: int, user_id: int, thread_id: int | None, reply_to: int, t: Translator) -> None:
        """Ask the last question again (/retry, 🔄): the new answer quotes the question, and the answer it
        replaces is marked so. `reply_to` serves when the question's message is not known."""
        question = await self.dialogs.last_question(chat_id, user_id)
        if question is None:
            await self._send(chat_id, t("retry.nothing"), reply_to, thread_id)
            return
        latest = await self.answers.latest(chat_id, user_id)
        origin = Origin(chat_id, user_id, (latest or {}).get("question_id") or reply_to, thread_id)
        record, _ = await self._admit(origin, t)
        if record is None:
            return
        async with self._released_on_failure(record, t):
            await self.dialogs.drop_last_exchange_if(chat_id, user_id, question)
            await self._queue(record, question, t, replacing=True)

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

    async def _admit(
        self, origin: Origin, t: Translator, later: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        """(the in-flight record, "ok") when the turn may go ahead; otherwise (None, why), the user told."""
        record = {
            "job_id": uuid.uuid4().hex,
            "user_id": origin.user_id,
            "chat_id": origin.chat_id,
            "thread_id": origin.thread_id,
            "reply_to": origin.reply_to,
            "lang": t.language,
            "received": time.time(),
            "message_ids": [],
            "draft_id": None,
            "entry_id": None,
        }
        if self.settings.stream_drafts and self.outbox.drafts_work(origin.chat_id):
            record["draft_id"] = draft_id_for(record["job_id"])
        ttl = int(self.settings.job_timeout_s) + 600
        admission = await self.access.admit(origin.user_id, record, ttl, {**later, "lang": t.language} if later else None)
        if admission.ok:
            try:
                await self._first_sign(record, t)
                await self.access.update_inflight(record)
            except ChatGone:
                await self._give_up(record, "")
                return None, "chat_gone"
            except Exception:  # Redis or Telegram failing right after admission: never leave the user "busy"
                log.exception("turn failed right after admission", extra={"user": self.hash_user(origin.user_id)})
                self.metrics.errors.labels(where="turn").inc()
                await self._give_up(record, t("answer.failed"))
                return None, "failed"
            return record, "ok"
        if admission.verdict == "queued":
            self.metrics.waiting_turns.inc()
        else:
            self.metrics.refusals.labels(reason=admission.verdict).inc()
        if not admission.tell:  # told already: a flood of messages must not make the bot flood back
            return None, admission.verdict
        if admission.verdict == "limited":
            text = t("limited", limit=t.limit(*admission.limit), wait=t.duration(admission.retry_in_s))
        else:
            text = t(admission.verdict)  # queued, busy, banned
        await self._send(origin.chat_id, text, origin.reply_to, origin.thread_id)
        return None, admission.verdict

    async def _first_sign(self, record: dict[str, Any], t: Translator) -> None:
        """At once: the draft "Thinking…" (private chats), or a placeholder message with ⏹ under it."""
        if record["draft_id"] is not None:
            try:
                await self.outbox.draft(record["chat_id"], record["draft_id"], t("status.thinking"), markdown=False)
                return
            except Skipped:  # paced: the delivery shows it within a second
                return
            except DraftsUnavailable:
                record["draft_id"] = None
        record["message_ids"] = [
            await self.outbox.send(
                record["chat_id"],
                t("status.thinking"),
                reply_to=record["reply_to"],
                thread_id=record["thread_id"],
                keyboard=stop_keyboard(t, record["user_id"], record["job_id"]),
            )
        ]

    async def _queue(self, record: dict[str, Any], question: dict[str, Any], t: Translator, replacing: bool) -> None:
        chat_id, user_id = record["chat_id"], record["user_id"]
        history = await self.dialogs.messages(chat_id, user_id)
        gone = set(await self.dialogs.keep_images_alive([*history, question]))
        if gone & {part.get("key") for part in question["content"]}:
            await self._give_up(record, t("error.image_missing"))
            return
        messages = [self._without_images(m, gone) for m in history] + [question]
        if self.settings.system_prompt:
            messages.insert(
                0, {"role": "system", "content": [{"type": "text", "text": self.settings.system_prompt}]}
            )
        params = self.preferences.generation_params(await self.preferences.get(user_id))
        job = protocol.new_job(messages, params, self.settings.job_timeout_s, job_id=record["job_id"])
        record.update(
            question=question, session=await self.dialogs.session(chat_id, user_id), deadline=job.deadline
        )
        await self.dialogs.remember_question(chat_id, user_id, question)
        record["entry_id"] = await self.queue.submit(job, owner=user_id)
        await self.access.update_inflight(record)
        await self.access.record_turn(user_id)
        self.metrics.turns.inc()
        await self.answers.retire(chat_id, user_id, t, replaced=replacing)  # only the newest answer has buttons
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
            placeholder = record["message_ids"][:1]
            if text and not (placeholder and await self.outbox.edit(record["chat_id"], placeholder[0], text)):
                await self._send(record["chat_id"], text, record["reply_to"], record["thread_id"])
        except ChatGone:
            pass
        except Exception:
            log.warning("could not tell the user the turn failed", exc_info=True)
        user_id, job_id = record["user_id"], record["job_id"]
        await until_redis_answers("freeing the user", lambda: self.access.release(user_id, job_id))
        await until_redis_answers("refunding the turn", lambda: self.access.refund(user_id, job_id))

    async def _reply(self, message: Message, text: str) -> None:
        await self.outbox.reply(message, text)

    async def _send(self, chat_id: int, text: str, reply_to: int, thread_id: int | None) -> None:
        try:
            await self.outbox.send(chat_id, text, reply_to=reply_to, thread_id=thread_id)
        except ChatGone:
            log.info("chat is gone; reply dropped")

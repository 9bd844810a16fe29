"""Reading a job's reply stream and showing it in Telegram, one task per answer.

The task's whole state is the in-flight record in Redis (job, chat, message ids), and the reply stream is
re-read from its start, so a bot restarted mid-answer picks every answer up where it was (`resume`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.chat_action import ChatActionSender
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.formatting import TELEGRAM_TEXT_LIMIT
from bot.i18n import Translator
from bot.keyboards import stop_keyboard
from bot.observability import BotMetrics, UserHasher
from bot.services.access import AccessControl
from bot.services.answers import AnswerRegistry
from bot.services.dialogs import DialogStore
from bot.services.jobs import JobSubmitter
from bot.services.message_chain import MessageChain
from bot.services.outbox import ChatGone, Outbox
from bot.services.outcomes import Outcome, show_failure, show_outcome
from bot.services.replies import ReplyReader, Subscription
from bot.services.retrying import until_redis_answers
from bot.services.stopping import cancel_and_wait
from model import protocol

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0  # how often the queue position is looked up while waiting
DEADLINE_GRACE_S = 30.0  # a live worker answers `expired` itself; give it time to before giving up
STALL_S = 120.0  # past the deadline, a taken job with no event for this long is given up
CANCEL_WAIT_S = 15.0  # how long a worker may take to acknowledge /cancel
AHEAD_CAP = 100  # queue positions beyond this show as "100+": counting further costs and tells nothing
DRAFT_REFRESH_S = 20.0  # a draft vanishes 30 s after its last update: a waiting one is shown again before


@dataclass
class _CancelWatch:
    seen_at: float | None = None  # when /cancel was first noticed


class AnswerDelivery:
    def __init__(
        self,
        bot: Bot,
        access: AccessControl,
        queue: JobSubmitter,
        dialogs: DialogStore,
        outbox: Outbox,
        metrics: BotMetrics,
        hash_user: UserHasher,
        replies: ReplyReader,
        answers: AnswerRegistry,
        message_limit: int = TELEGRAM_TEXT_LIMIT,
    ):
        self.bot = bot
        self.answers = answers
        self.replies = replies
        self.message_limit = message_limit
        self.access = access
        self.queue = queue
        self.dialogs = dialogs
        self.outbox = outbox
        self.metrics = metrics
        self.hash_user = hash_user
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Set by TurnService: starts the turn a user sent while their answer was written, once it is done.
        self.next_turn: Callable[[int], Awaitable[None]] | None = None

    @property
    def active(self) -> int:
        return len(self._tasks)

    def start(self, record: dict[str, Any]) -> None:
        job_id = record["job_id"]
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._run(record), name=f"deliver-{job_id}")
        self._tasks[job_id] = task
        self.metrics.inflight.set(len(self._tasks))
        task.add_done_callback(lambda done: self._forget_task(job_id, done))

    def _forget_task(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(job_id, None)
        self.metrics.inflight.set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:  # e.g. Redis gone while finishing
            log.error("delivery task failed", exc_info=task.exception(), extra={"job": job_id})

    async def resume(self) -> int:
        """After a restart: deliver every answer that was in flight. Returns how many."""
        resumed = 0
        for record in await self.access.all_inflight():
            if record.get("entry_id"):
                self.start(record)
                resumed += 1
            else:  # the bot stopped between admitting the turn and queueing it: the job never existed
                try:
                    await self._abandon(record)
                except Exception:  # one odd record must not keep the bot from starting
                    log.warning(
                        "could not abandon a stale turn", exc_info=True, extra={"job": record["job_id"]}
                    )
        if resumed:
            log.info("resumed %d answers in flight", resumed)
        return resumed

    async def wait_done(self, job_id: str, within_s: float) -> None:
        """Until this answer's delivery has ended (or `within_s` passed)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait([task], timeout=within_s)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop delivering (shutdown). In-flight records stay in Redis: the next start resumes them."""
        await cancel_and_wait(list(self._tasks.values()))

    async def _abandon(self, record: dict[str, Any]) -> None:
        t = Translator(record.get("lang", "en"))
        for message_id in record.get("message_ids", [])[:1]:
            try:
                await self.outbox.edit(record["chat_id"], message_id, t("answer.failed"))
            except ChatGone:
                pass
        await self.access.release(record["user_id"], record["job_id"])

    # --- one answer -----------------------------------------------------------------------------------------

    async def _run(self, record: dict[str, Any]) -> None:
        started = time.monotonic()
        t = Translator(record.get("lang", "en"))

        async def remember(changed: MessageChain) -> None:
            record["message_ids"], record["draft_id"] = changed.message_ids, changed.draft_id
            await self.access.update_inflight(record)

        chain = MessageChain(
            self.outbox,
            record["chat_id"],
            record.get("message_ids", []),
            record.get("reply_to"),
            record.get("thread_id"),
            remember,
            self.message_limit,
            draft_id=record.get("draft_id"),
        )
        try:
            async with ChatActionSender.typing(
                bot=self.bot, chat_id=record["chat_id"], message_thread_id=record.get("thread_id")
            ):
                outcome = await self._follow(record, chain, t)
            await show_outcome(record, outcome, chain, t)
        except ChatGone:
            outcome = Outcome("chat_gone")
            await self.queue.cancel(record["job_id"])  # nobody to show it to: stop the worker too
        except asyncio.CancelledError:
            raise  # shutdown: the record stays for the next start
        except Exception:  # a bug or Telegram/Redis failing for good: tell the user, keep the bot up
            log.exception("delivery failed", extra={"job": record["job_id"]})
            self.metrics.errors.labels(where="delivery").inc()
            outcome = Outcome("failed")
            await show_failure(chain, t)
        await self._finish(record, outcome, started, chain.message_ids)

    async def _follow(self, record: dict[str, Any], chain: MessageChain, t: Translator) -> Outcome:
        subscription = self.replies.subscribe(protocol.reply_key(record["job_id"]))
        try:
            return await self._follow_events(record, chain, t, subscription)
        finally:
            self.replies.unsubscribe(subscription)

    async def _follow_events(
        self, record: dict[str, Any], chain: MessageChain, t: Translator, subscription: Subscription
    ) -> Outcome:
        text, dirty, taken = "", False, False
        shown_status, next_check, status_shown_at = None, 0.0, 0.0
        stop = stop_keyboard(t, record["user_id"], record["job_id"])
        last_event = time.time()
        watch = _CancelWatch()
        while True:
            events = await subscription.next_events(0.3 if dirty else 1.0)
            for _, event in events:
                last_event = time.time()
                kind = event.get("event")
                if kind == "delta":
                    text += event.get("text", "")
                    dirty = True
                elif kind == "restart":  # the job is being re-run after a worker crash
                    text, dirty = "", True
                elif kind == "done":
                    if event.get("finish") == "cancelled":  # the worker may not repeat the partial text
                        return Outcome("cancelled", text=event.get("text") or text, finish="cancelled")
                    return Outcome("done", text=event.get("text", text), finish=event.get("finish", "stop"))
                elif kind == "error":
                    log.warning(
                        "worker error %s: %s",
                        event.get("code"),
                        event.get("message"),
                        extra={"job": record["job_id"]},
                    )
                    return Outcome("error", text=text, code=event.get("code", "internal"))
            taken = taken or bool(events)
            if dirty and text:
                if record.get("first_text_at") is None:
                    record["first_text_at"] = time.time()
                    self.metrics.first_text_latency.observe(time.time() - record["received"])
                dirty = not await chain.show(text, markdown=True, final=False, keyboard=self._stop(chain, stop))

            now = time.time()
            if now < next_check:
                continue
            next_check = now + (1.0 if text else STATUS_EVERY_S)
            try:
                ahead = None if taken else await self.queue.ahead_of(record["entry_id"], cap=AHEAD_CAP)
                taken = ahead is None
                if not text:
                    status = await self._status(ahead, record["deadline"], t)
                    stale_draft = chain.draft_id is not None and now - status_shown_at > DRAFT_REFRESH_S
                    if (status != shown_status or stale_draft) and await chain.show(
                        status, markdown=False, final=False, keyboard=self._stop(chain, stop)
                    ):
                        shown_status, status_shown_at = status, now
                ended = await self._check_cancel_and_deadline(record, watch, taken, text, now - last_event)
                if ended is None and not await self.queue.exists(record["entry_id"]):
                    # Redis came back without its data: the job is gone and no worker will answer it. (An
                    # answered job would have left its final event, which we read before getting here.)
                    log.warning("job vanished from the stream", extra={"job": record["job_id"]})
                    ended = Outcome("lost", text=text)
            except (RedisConnectionError, RedisTimeoutError) as exc:  # Redis restarting: try again later
                log.warning("queue lookups failed, retrying: %s", exc, extra={"job": record["job_id"]})
                self.metrics.errors.labels(where="redis").inc()
                continue
            if ended:
                return ended

    async def _check_cancel_and_deadline(
        self, record: dict[str, Any], watch: _CancelWatch, taken: bool, text: str, quiet_s: float
    ) -> Outcome | None:
        """An outcome when the bot must end the answer itself: /cancel on a job no worker is running (or one
        that does not acknowledge it), or a deadline long past with no worker showing life."""
        now = time.time()
        if await self.queue.cancel_requested(record["job_id"]):
            watch.seen_at = watch.seen_at or now
            waited = now - watch.seen_at > CANCEL_WAIT_S
            if not taken or waited or not await self.queue.workers_alive():
                await self.queue.withdraw(record["entry_id"])
                return Outcome("cancelled", text=text, finish="cancelled")
        if now > record["deadline"] + DEADLINE_GRACE_S and (not taken or quiet_s > STALL_S):
            await self.queue.cancel(record["job_id"])
            if not taken:
                await self.queue.withdraw(record["entry_id"])
            offline = not await self.queue.workers_alive()
            return Outcome("expired" if offline else "timeout", text=text)
        return None

    @staticmethod
    def _stop(chain: MessageChain, keyboard: InlineKeyboardMarkup) -> InlineKeyboardMarkup | None:
        """⏹ under an answer written by edits; a draft has Telegram's own stop button."""
        return keyboard if chain.draft_id is None else None

    async def _status(self, ahead: int | None, deadline: float, t: Translator) -> str:
        if ahead is None:
            return t("status.thinking")
        if not await self.queue.workers_alive():
            until = datetime.fromtimestamp(deadline, UTC).strftime("%H:%M")
            return t("status.offline", until=until)
        if ahead == 0:
            return t("status.next")
        return t("status.queued", ahead=f"{ahead}+" if ahead >= AHEAD_CAP else ahead)

    async def _finish(
        self, record: dict[str, Any], outcome: Outcome, started: float, message_ids: list[int]
    ) -> None:
        chat_id, user_id, job_id = record["chat_id"], record["user_id"], record["job_id"]
        if message_ids and outcome.kind != "chat_gone":
            await until_redis_answers("keeping the answer's buttons", lambda: self.answers.remember(record, message_ids))
        if outcome.kind == "done":
            await until_redis_answers(
                "keeping the exchange",
                lambda: self.dialogs.append_exchange(
                    chat_id, user_id, record["session"], record["question"], outcome.text
                ),
            )
            self.metrics.reply_latency.observe(time.time() - record["received"])
        label = outcome.kind if outcome.kind != "error" else f"error:{outcome.code}"
        self.metrics.replies.labels(outcome=label).inc()
        # Without this the user stays "still answering" until the in-flight record expires: never give up.
        await until_redis_answers("releasing the user", lambda: self.access.release(user_id, job_id))
        await until_redis_answers("forgetting the job", lambda: self.queue.forget(job_id))
        if self.next_turn is not None and outcome.kind != "chat_gone":
            try:
                await self.next_turn(user_id)
            except Exception:  # the next turn is the user's own problem to report, not this answer's
                log.exception("the waiting turn failed", extra={"user": self.hash_user(user_id)})
        log.info(
            "answer %s",
            label,
            extra={
                "job": job_id,
                "user": self.hash_user(user_id),
                "chars": len(outcome.text),
                "finish": outcome.finish or None,
                "elapsed_ms": int((time.monotonic() - started) * 1000),
                "since_message_ms": int((time.time() - record["received"]) * 1000),
            },
        )

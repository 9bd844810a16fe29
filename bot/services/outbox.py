"""Every message the bot sends or edits goes through here, so Telegram's rules are handled in one place.

- Pacing: progress edits ("essential=False") are spaced per chat (1 s private, 3 s groups); all sends and
  edits share one budget for the whole bot. Over budget, progress edits are skipped (the next one carries the
  same text anyway) and essential calls wait their turn, so a burst of users does not earn a burst of 429s.
- 429: the chat is left alone for `retry_after`; an essential call (a final answer, a reply to a command)
  waits that long and is delivered, a progress edit is dropped. Essential calls to one chat go one at a
  time, so after a 429 one of them waits while the others queue behind it (not all retrying at once), and
  for a minute after it they keep the chat's edit interval. No 429 storms, no lost answers.
- "message is not modified" is success; "can't parse entities" resends as plain text; a reply to a deleted
  message is sent without the reply; a user who blocked the bot raises ChatGone, which callers end quietly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import Message, ReplyParameters

from bot.formatting import to_html
from bot.observability import BotMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_SERVER_RETRIES = 5
_CAREFUL_S = 60.0  # after a 429 ends, how long essential calls to that chat stay paced


class ChatGone(Exception):
    """The user blocked the bot, or the bot was removed from the group: nothing more can be delivered."""


class Skipped(Exception):
    """A progress edit was not sent (pacing or flood control); the next one will carry the text."""


class CallBudget:
    """A token bucket for the whole bot's sends and edits (Telegram allows about 30 a second). Essential calls
    wait for a token; progress edits take one only while a reserve is left, so they never delay a final
    answer or a reply to a command."""

    BURST = 0.2  # bucket size as a share of a second's budget: any one second sees at most 1.2 x per_second
    RESERVE = 0.5  # share of the bucket progress edits leave for essential calls

    def __init__(self, per_second: float):
        self.per_second = per_second
        self.capacity = max(1.0, self.BURST * per_second)
        self.tokens = self.capacity
        self._updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.per_second)
        self._updated = now

    def try_take(self) -> bool:
        self._refill()
        if self.tokens < 1 + self.RESERVE * self.capacity:
            return False
        self.tokens -= 1
        return True

    async def take(self) -> None:
        while True:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.per_second)


@dataclass
class _ChatPace:
    """One chat's pacing and flood-control state (times are time.monotonic())."""

    quiet_until: float = 0.0  # flood control: no call before this
    next_edit: float = 0.0  # earliest next progress edit
    careful_until: float = 0.0  # after a 429: essential calls keep the chat's interval until then
    next_call: float = 0.0  # earliest next essential call while careful
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one essential call at a time

    def forgettable(self, now: float) -> bool:
        return not self.turn.locked() and max(self.quiet_until, self.next_edit, self.careful_until) <= now


class Outbox:
    def __init__(
        self,
        bot: Bot,
        metrics: BotMetrics,
        private_interval_s: float,
        group_interval_s: float,
        messages_per_second: float,
    ):
        self.bot = bot
        self.metrics = metrics
        self.private_interval_s = private_interval_s
        self.group_interval_s = group_interval_s
        self.budget = CallBudget(messages_per_second)
        self._chats: dict[int, _ChatPace] = {}

    def edit_interval(self, chat_id: int) -> float:
        return self.private_interval_s if chat_id > 0 else self.group_interval_s

    # --- public ---------------------------------------------------------------------------------------------

    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        markdown: bool = False,
        thread_id: int | None = None,
    ) -> int:
        """Send a message (interface HTML, or model markdown when `markdown`); returns its message_id."""
        reply = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None

        async def attempt(body: str, parse_mode: str | None) -> int:
            message = await self.bot.send_message(
                chat_id=chat_id,
                text=body,
                parse_mode=parse_mode,
                reply_parameters=reply,
                message_thread_id=thread_id,
            )
            return message.message_id

        return await self._with_fallback(chat_id, text, markdown, attempt, essential=True)

    async def reply(self, message: Message, text: str) -> int | None:
        """Answer a user's message with interface HTML; a chat that is gone is logged, not raised."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        try:
            return await self.send(message.chat.id, text, reply_to=message.message_id, thread_id=thread_id)
        except ChatGone:
            log.info("chat is gone; reply dropped")
            return None

    async def edit(
        self, chat_id: int, message_id: int, text: str, *, markdown: bool = False, essential: bool = True
    ) -> bool:
        """Edit a message. False when it no longer exists (deleted by the user): the caller sends anew.
        A non-essential edit raises Skipped when pacing or flood control holds it back."""
        if not essential:
            self._take_edit_slot(chat_id)

        async def attempt(body: str, parse_mode: str | None) -> bool:
            await self.bot.edit_message_text(
                chat_id=chat_id, message_id=message_id, text=body, parse_mode=parse_mode
            )
            return True

        try:
            return await self._with_fallback(chat_id, text, markdown, attempt, essential=essential)
        except TelegramBadRequest as exc:
            description = exc.message.lower()
            if "not modified" in description:
                return True
            if "message to edit not found" in description or "can't be edited" in description:
                return False
            raise

    async def request(self, chat_id: int, make: Callable[[], Awaitable[T]]) -> T:
        """Any other call a turn cannot do without (getFile): waits out flood control and retries 5xx."""
        return await self._call(chat_id, make, essential=True)

    async def delete(self, chat_id: int, message_id: int) -> None:
        try:
            await self._call(
                chat_id,
                lambda: self.bot.delete_message(chat_id=chat_id, message_id=message_id),
                essential=False,
            )
        except (TelegramBadRequest, Skipped):
            pass  # already gone, or too old to delete: harmless

    # --- internals ------------------------------------------------------------------------------------------

    def _chat(self, chat_id: int) -> _ChatPace:
        chat = self._chats.get(chat_id)
        if chat is None:
            if len(self._chats) > 10_000:  # forget chats that are long quiet
                now = time.monotonic()
                self._chats = {c: pace for c, pace in self._chats.items() if not pace.forgettable(now)}
            chat = self._chats[chat_id] = _ChatPace()
        return chat

    def _take_edit_slot(self, chat_id: int) -> None:
        now, chat = time.monotonic(), self._chat(chat_id)
        if now < chat.quiet_until or now < chat.next_edit or not self.budget.try_take():
            raise Skipped
        chat.next_edit = now + self.edit_interval(chat_id)

    async def _with_fallback(
        self,
        chat_id: int,
        text: str,
        markdown: bool,
        attempt: Callable[[str, str | None], Awaitable[T]],
        essential: bool,
    ) -> T:
        body = to_html(text) if markdown else text
        try:
            return await self._call(chat_id, lambda: attempt(body, ParseMode.HTML), essential)
        except TelegramBadRequest as exc:
            if (
                "can't parse entities" not in exc.message.lower()
                and "unsupported start tag" not in exc.message
            ):
                raise
            log.warning("Telegram refused our HTML, sending plain text: %s", exc.message)
            self.metrics.errors.labels(where="parse_entities").inc()
            return await self._call(chat_id, lambda: attempt(text, None), essential)

    async def _call(self, chat_id: int, make: Callable[[], Awaitable[T]], essential: bool) -> T:
        chat = self._chat(chat_id)
        if not essential:  # one try, now or never: the next progress edit carries the same text
            if time.monotonic() < chat.quiet_until:
                raise Skipped
            try:
                return await self._attempt(chat, make)
            except (TelegramRetryAfter, TelegramServerError, TelegramNetworkError) as exc:
                raise Skipped from exc
        async with chat.turn:
            server_failures = 0
            while True:
                wait = max(chat.quiet_until, chat.next_call) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.budget.take()
                try:
                    result = await self._attempt(chat, make)
                except TelegramRetryAfter:
                    continue  # the chat is quiet for retry_after now: wait it out, then try again
                except (TelegramServerError, TelegramNetworkError) as exc:
                    server_failures += 1
                    if server_failures > _MAX_SERVER_RETRIES:
                        raise
                    log.warning("Telegram failed (%s), retrying", type(exc).__name__)
                    await asyncio.sleep(min(0.5 * 2**server_failures, 10))
                    continue
                if time.monotonic() < chat.careful_until:
                    chat.next_call = time.monotonic() + self.edit_interval(chat_id)
                return result

    async def _attempt(self, chat: _ChatPace, make: Callable[[], Awaitable[T]]) -> T:
        """One call. A 429 makes the chat quiet for retry_after (and careful after that), then is re-raised;
        a chat that is gone raises ChatGone."""
        try:
            return await make()
        except TelegramRetryAfter as exc:
            self.metrics.telegram_retry_after.inc()
            chat.quiet_until = time.monotonic() + exc.retry_after
            chat.careful_until = chat.quiet_until + _CAREFUL_S
            log.info("flood control: chat quiet for %s s", exc.retry_after, extra={"retry_after": exc.retry_after})
            raise
        except TelegramForbiddenError as exc:
            raise ChatGone(exc.message) from None
        except TelegramBadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise ChatGone(exc.message) from None
            raise

"""Every message the bot sends or edits goes through here, so Telegram's rules are handled in one place.

- Pacing (bot/services/pacing.py): every chat keeps a pace (a call a second in private chats, one every 3 s
  in groups, short bursts allowed) and all sends and edits share one budget for the whole bot. Over either,
  progress edits ("essential=False") are skipped (the next one carries the same text anyway) and essential
  calls wait their turn, so a burst of users does not earn a burst of 429s.
- 429: the chat is left alone for `retry_after` and its pace starts again from empty; an essential call (a
  final answer, a reply to a command) waits that long and is delivered, a progress edit is dropped. Essential
  calls to one chat go one at a time, so after a 429 one of them waits while the others queue behind it
  instead of all retrying at once. No 429 storms, no lost answers.
- "message is not modified" is success; "can't parse entities" resends as plain text; a reply to a deleted
  message is sent without the reply; a user who blocked the bot raises ChatGone, which callers end quietly.
- Drafts (sendMessageDraft) are progress like edits: spaced by the chat's interval and skipped when the bot's
  budget is short, but they put no message into the chat, so they take no token of the chat's own pace. A
  server that refuses them (an older Bot API) makes `draft` raise DraftsUnavailable, and that chat is
  remembered: its answers are edited placeholders from then on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup, Message, ReactionTypeEmoji, ReplyParameters

from bot.formatting import to_html
from bot.observability import BotMetrics
from bot.services.pacing import ChatPace, bot_budget

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_SERVER_RETRIES = 5


class ChatGone(Exception):
    """The user blocked the bot, or the bot was removed from the group: nothing more can be delivered."""


class Skipped(Exception):
    """A progress edit was not sent (pacing or flood control); the next one will carry the text."""


class DraftsUnavailable(Exception):
    """This chat (or this Bot API server) does not take drafts: stream by edits instead."""


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
        self.budget = bot_budget(messages_per_second)
        self._chats: dict[int, ChatPace] = {}
        self._no_drafts: set[int] = set()  # chats whose drafts failed: edits there from now on
        self._no_reactions: set[int] = set()  # chats that refused a reaction (a group with reactions off)

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
        keyboard: InlineKeyboardMarkup | None = None,
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
                reply_markup=keyboard,
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
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        markdown: bool = False,
        essential: bool = True,
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> bool:
        """Edit a message (without `keyboard` its buttons go, as in Telegram). False when it no longer exists
        (deleted by the user): the caller sends anew. A non-essential edit raises Skipped when pacing or flood
        control holds it back."""
        if not essential:
            self._take_edit_slot(chat_id)

        async def attempt(body: str, parse_mode: str | None) -> bool:
            await self.bot.edit_message_text(
                chat_id=chat_id, message_id=message_id, text=body, parse_mode=parse_mode, reply_markup=keyboard
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

    def drafts_work(self, chat_id: int) -> bool:
        return chat_id > 0 and chat_id not in self._no_drafts  # drafts exist in private chats only

    async def draft(
        self, chat_id: int, draft_id: int, text: str, *, markdown: bool, thread_id: int | None = None
    ) -> None:
        """Show `text` as the chat's draft with a stop button. Raises Skipped (paced, flood control) or
        DraftsUnavailable (refused: the chat is remembered and streams by edits from then on)."""
        now, chat = time.monotonic(), self._chat(chat_id)
        if now < chat.quiet_until or now < chat.next_edit or not self.budget.try_take():
            raise Skipped
        chat.next_edit = now + self.edit_interval(chat_id)

        async def attempt(body: str, parse_mode: str | None) -> bool:
            return await self.bot.send_message_draft(
                chat_id=chat_id,
                draft_id=draft_id,
                text=body,
                parse_mode=parse_mode,
                message_thread_id=thread_id,
                can_stop=True,
            )

        try:
            await self._with_fallback(chat_id, text, markdown, attempt, essential=False)
        except (TelegramBadRequest, TelegramNotFound) as exc:  # e.g. 404 from a server without the method
            log.warning("drafts refused, this chat streams by edits now: %s", exc.message)
            self.metrics.errors.labels(where="draft").inc()
            self._no_drafts.add(chat_id)
            raise DraftsUnavailable(exc.message) from None

    async def set_keyboard(self, chat_id: int, message_id: int, keyboard: InlineKeyboardMarkup | None) -> None:
        """Replace a message's buttons (None removes them). Best effort: the message may be gone or too old."""
        try:
            await self._call(
                chat_id,
                lambda: self.bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=keyboard
                ),
                essential=True,
            )
        except TelegramBadRequest as exc:
            log.debug("buttons not changed: %s", exc.message)

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        """A reaction on the user's message: decoration, one try, never an error (groups may forbid it)."""
        if chat_id in self._no_reactions:
            return
        try:
            await self._call(
                chat_id,
                lambda: self.bot.set_message_reaction(
                    chat_id=chat_id, message_id=message_id, reaction=[ReactionTypeEmoji(emoji=emoji)]
                ),
                essential=False,
                counted=False,
            )
        except TelegramBadRequest as exc:
            log.info("reactions refused in a chat: %s", exc.message)
            self._no_reactions.add(chat_id)
        except (Skipped, ChatGone):
            pass

    async def request(self, chat_id: int, make: Callable[[], Awaitable[T]]) -> T:
        """Any other call a turn cannot do without (getFile): waits out flood control and retries 5xx."""
        return await self._call(chat_id, make, essential=True, counted=False)  # not a message: no chat pace

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

    def _chat(self, chat_id: int) -> ChatPace:
        chat = self._chats.get(chat_id)
        if chat is None:
            if len(self._chats) > 10_000:  # forget chats that are long quiet
                now = time.monotonic()
                self._chats = {c: pace for c, pace in self._chats.items() if not pace.forgettable(now)}
            chat = self._chats[chat_id] = ChatPace.every(self.edit_interval(chat_id))
        return chat

    def _take_edit_slot(self, chat_id: int) -> None:
        now, chat = time.monotonic(), self._chat(chat_id)
        if now < chat.quiet_until or now < chat.next_edit or not chat.bucket.try_take():
            raise Skipped
        if not self.budget.try_take():
            chat.bucket.put_back()
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

    async def _call(
        self, chat_id: int, make: Callable[[], Awaitable[T]], essential: bool, counted: bool = True
    ) -> T:
        """`counted`: the call puts a message into the chat or changes one (Telegram's per-chat limits);
        a progress edit has taken its token in _take_edit_slot already."""
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
                if (wait := chat.quiet_until - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if counted:
                    await chat.bucket.take()
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
                return result

    async def _attempt(self, chat: ChatPace, make: Callable[[], Awaitable[T]]) -> T:
        """One call. A 429 makes the chat quiet for retry_after, then is re-raised; a chat that is gone
        raises ChatGone."""
        try:
            return await make()
        except TelegramRetryAfter as exc:
            self.metrics.telegram_retry_after.inc()
            chat.flood_controlled(exc.retry_after)
            log.info("flood control: chat quiet for %s s", exc.retry_after, extra={"retry_after": exc.retry_after})
            raise
        except TelegramForbiddenError as exc:
            raise ChatGone(exc.message) from None
        except TelegramBadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise ChatGone(exc.message) from None
            raise

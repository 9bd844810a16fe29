"""A bot's pending updates: long polling with getUpdates, or pushing them to a webhook.

Like Telegram: an update stays pending until a later getUpdates confirms it with a higher offset (or the
webhook answers 2xx); only one getUpdates may wait at a time (the earlier one ends with 409); updates
of types outside allowed_updates are not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from .errors import CONFLICT_POLLING, ApiError
from .params import Params, read_multipart

if TYPE_CHECKING:
    from .state import BotAccount

log = logging.getLogger(__name__)

# What Telegram sends when allowed_updates is empty or was never set.
_NOT_BY_DEFAULT = {"chat_member", "message_reaction", "message_reaction_count"}


class UpdateQueue:
    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._next_id = 1
        self.allowed: list[str] = []
        self._changed = asyncio.Event()
        self._poller: object | None = None
        self.closed = False

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def accepts(self, kind: str) -> bool:
        return kind in self.allowed if self.allowed else kind not in _NOT_BY_DEFAULT

    def set_allowed(self, allowed: list[str] | None) -> None:
        """None keeps the previous setting, as Telegram does."""
        if allowed is not None:
            self.allowed = list(allowed)
            self._pending = [u for u in self._pending if self.accepts(_kind(u))]

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if not self.accepts(kind):
            return None
        update = {"update_id": self._next_id, kind: payload}
        self._next_id += 1
        self._pending.append(update)
        self._wake()
        return update

    def confirm(self, offset: int | None) -> None:
        if offset is None or offset == 0:
            return
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        else:
            self._pending = self._pending[offset:]

    def drop_all(self) -> None:
        self._pending.clear()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def peek(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._pending[:limit]

    async def wait_changed(self, seconds: float) -> None:
        event = self._changed
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
        # together with the event, and a cancelled webhook task would then keep waiting.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    async def poll(self, offset: int | None, limit: int, wait: float) -> list[dict[str, Any]]:
        """getUpdates: confirm up to offset, then wait up to `wait` seconds for something new."""
        self.confirm(offset)
        ticket = object()
        self._poller = ticket
        self._wake()  # an earlier poll still waiting now ends with 409
        deadline = time.monotonic() + wait
        while True:
            if self._poller is not ticket:
                raise ApiError(409, CONFLICT_POLLING)
            ready = self.peek(limit)
            remaining = deadline - time.monotonic()
            if ready or self.closed or remaining <= 0:
                self._poller = None
                return ready
            await self.wait_changed(remaining)

    def close(self) -> None:
        """Ends waiting polls (server shutdown)."""
        self.closed = True
        self._wake()


def _kind(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


Execute = Callable[["BotAccount", str, Params], Awaitable[Any]]


async def deliver_to_webhook(bot: BotAccount, session: aiohttp.ClientSession, execute: Execute) -> None:
    """Posts pending updates to bot.webhook.url in order, retrying with a growing pause on failure.

    A webhook may answer with a method call in its response body, which is then executed, as Telegram does.
    """
    backoff = 0.2
    while True:
        pending = bot.updates.peek(1)
        if not pending:
            await bot.updates.wait_changed(30.0)
            continue
        update = pending[0]
        headers = {"Content-Type": "application/json"}
        if bot.webhook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = bot.webhook.secret_token
        try:
            async with session.post(
                bot.webhook.url,
                data=json.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                if response.status >= 300:
                    raise ConnectionError(
                        f"Wrong response from the webhook: {response.status} {response.reason}"
                    )
                reply = await _reply_params(response)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as error:
            bot.webhook.last_error_date = int(time.time())
            bot.webhook.last_error_message = str(error) or type(error).__name__
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.2
        bot.updates.confirm(update["update_id"] + 1)
        method = reply.str("method") if reply else None
        if reply and method:
            try:
                await execute(bot, method, reply)
            except ApiError as error:
                log.info("method %s from a webhook reply failed: %s", method, error.description)


async def _reply_params(response: aiohttp.ClientResponse) -> Params | None:
    """A method call in the webhook's response (JSON or multipart, as aiogram writes it), if any."""
    if response.content_type == "multipart/form-data":
        return await read_multipart(aiohttp.MultipartReader.from_response(response))
    body = await response.read()
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    return Params(data) if isinstance(data, dict) else None

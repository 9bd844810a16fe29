"""One reader for every reply stream in flight.

Each answer being delivered waits on its own reply stream. One `XREAD BLOCK` per answer would hold one Redis
connection per answer (redis-py's pool stops at 100: a busy bot would run out). Instead a single task reads
all the streams with one XREAD (it takes any number of keys) and hands each answer its events through a
queue. Cost: at most one XREAD every BLOCK_MS when idle, whatever the number of answers.

Everything in a reply stream is untrusted input shared by every user's answer: an entry that does not decode
(invalid UTF-8, `"tokens": "abc"`), or a reply key that is not a stream (which fails the whole XREAD), fails
only its own answer, with an `error` event of code `bad_reply`. Anything else that goes wrong in the task is
logged and the task restarts after a pause (it is supervised), so no answer waits for a reader that died.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.observability import BotMetrics
from bot.services.stopping import cancel_and_wait
from model import protocol

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]  # (stream entry id, decoded event)
BAD_REPLY = "bad_reply"  # the bot's own error code: the worker's reply could not be read


def unreadable(reason: str) -> dict[str, str]:
    """The event a broken reply stream ends with, shaped like the worker's own `error` events."""
    return {"event": "error", "code": BAD_REPLY, "message": reason}


class Subscription:
    def __init__(self, stream: str, after: str):
        self.stream = stream
        self.after = after  # last entry id handed out
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def next_events(self, wait_s: float) -> list[Event]:
        """Whatever has arrived, waiting up to wait_s for the first event."""
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancellation that comes with an event
            async with asyncio.timeout(wait_s):
                first = await self.events.get()
        except TimeoutError:
            return []
        events = [first]
        while not self.events.empty():
            events.append(self.events.get_nowait())
        return events


class ReplyReader:
    BLOCK_MS = 250  # also the longest a newly subscribed stream waits to be included
    RESTART_PAUSE_S = 1.0  # after an unexpected failure of the task, and while Redis is unreachable

    def __init__(self, redis: Redis, metrics: BotMetrics):
        self.redis = redis
        self.metrics = metrics
        self._subscriptions: dict[str, Subscription] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, stream: str, after: str = "0-0") -> Subscription:
        subscription = Subscription(stream, after)
        self._subscriptions[stream] = subscription
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervise(), name="reply-reader")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.get(subscription.stream) is subscription:
            del self._subscriptions[subscription.stream]

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _supervise(self) -> None:
        while True:
            try:
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not leave every answer in flight waiting for its deadline
                log.exception("the reply reader failed; restarting it")
                self.metrics.errors.labels(where="reply_reader").inc()
                await asyncio.sleep(self.RESTART_PAUSE_S)

    async def _read_forever(self) -> None:
        while True:
            if not self._subscriptions:
                self._wake.clear()
                await self._wake.wait()
                continue
            streams = {name: sub.after for name, sub in self._subscriptions.items()}
            try:
                found = await self.redis.xread(streams, block=self.BLOCK_MS, count=500)
            except (RedisConnectionError, RedisTimeoutError) as exc:  # Redis restarting: wait, do not fail
                log.warning("reading reply streams failed, retrying: %s", exc)
                await asyncio.sleep(self.RESTART_PAUSE_S)
                continue
            except ResponseError as exc:  # WRONGTYPE: one key is not a stream, and XREAD refuses them all
                if not await self._fail_non_streams(list(streams)):
                    raise
                log.warning("a reply key is not a stream: %s", exc)
                continue
            for name, entries in found or []:
                subscription = self._subscriptions.get(name.decode() if isinstance(name, bytes) else name)
                if subscription is None:
                    continue  # delivered and gone meanwhile
                self._hand_out(subscription, entries)

    def _hand_out(self, subscription: Subscription, entries: list[tuple[Any, Any]]) -> None:
        for entry_id, fields in entries:
            subscription.after = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                event = protocol.decode_event(fields)
            except Exception as exc:  # whatever a worker (or anyone with Redis access) wrote, it is one answer's
                # str(), not repr(): a UnicodeDecodeError's repr quotes the bytes, i.e. the answer's text
                self._fail(subscription, f"entry {subscription.after} does not decode: {type(exc).__name__}: {exc}")
                return
            subscription.events.put_nowait((subscription.after, event))

    async def _fail_non_streams(self, names: list[str]) -> bool:
        """Fail the answers whose reply key holds something other than a stream; False if none does."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.type(name)
            types = await pipe.execute()
        failed = False
        for name, kind in zip(names, types, strict=True):
            kind = kind.decode() if isinstance(kind, bytes) else kind
            subscription = self._subscriptions.get(name)
            if kind not in ("stream", "none") and subscription is not None:
                self._fail(subscription, f"the reply key holds a {kind}, not a stream")
                failed = True
        return failed

    def _fail(self, subscription: Subscription, reason: str) -> None:
        """End this answer with an error its user is told about, and stop reading its stream."""
        log.warning("unreadable reply stream %s: %s", subscription.stream, reason)
        self.metrics.errors.labels(where="reply_stream").inc()
        subscription.events.put_nowait((subscription.after, unreadable(reason)))
        self.unsubscribe(subscription)

"""One reader for every reply stream in flight.

Each answer being delivered waits on its own reply stream. One `XREAD BLOCK` per answer would hold one Redis
connection per answer (redis-py's pool stops at 100: a busy bot would run out). Instead a single task reads
all the streams with one XREAD (it takes any number of keys) and hands each answer its events through a
queue. Cost: at most one XREAD every BLOCK_MS when idle, whatever the number of answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from model import protocol

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]  # (stream entry id, decoded event)


class Subscription:
    def __init__(self, stream: str, after: str):
        self.stream = stream
        self.after = after  # last entry id handed out
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def next_events(self, wait_s: float) -> list[Event]:
        """Whatever has arrived, waiting up to wait_s for the first event."""
        try:
            first = await asyncio.wait_for(self.events.get(), wait_s)
        except TimeoutError:
            return []
        events = [first]
        while not self.events.empty():
            events.append(self.events.get_nowait())
        return events


class ReplyReader:
    BLOCK_MS = 250  # also the longest a newly subscribed stream waits to be included

    def __init__(self, redis: Redis):
        self.redis = redis
        self._subscriptions: dict[str, Subscription] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, stream: str, after: str = "0-0") -> Subscription:
        subscription = Subscription(stream, after)
        self._subscriptions[stream] = subscription
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read_forever(), name="reply-reader")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.get(subscription.stream) is subscription:
            del self._subscriptions[subscription.stream]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
                await asyncio.sleep(1.0)
                continue
            for name, entries in found or []:
                subscription = self._subscriptions.get(name.decode() if isinstance(name, bytes) else name)
                if subscription is None:
                    continue  # delivered and gone meanwhile
                for entry_id, fields in entries:
                    subscription.after = entry_id.decode()
                    subscription.events.put_nowait((subscription.after, protocol.decode_event(fields)))

"""Change notifications: live subscribers (the SSE feed) and waiters (`wait_for` in tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

_QUEUE_SIZE = 10_000


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._changed = asyncio.Event()
        self.version = 0  # counts changes, so a reader can tell whether any happened since it last looked

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A viewer this far behind is gone or stuck: end its stream rather than grow without bound.
                self._subscribers.discard(queue)
                _end(queue)
        self.notify()

    def notify(self) -> None:
        """Wakes everything waiting for a change (state changed without an event for viewers)."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, seconds: float) -> None:
        event = self._changed
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
        # together with the event, and a cancelled webhook task would then keep waiting.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of events from now on; None in it means the feed is over (server stopping)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        for queue in list(self._subscribers):
            _end(queue)
        self._subscribers.clear()
        self.notify()


def _end(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)

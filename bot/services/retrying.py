"""Redis writes that must happen even across a Redis restart (freeing a user, keeping an answer)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")


async def until_redis_answers(what: str, make: Callable[[], Awaitable[T]], give_up_after_s: float = 900.0) -> T:
    """Retry through an outage with backoff up to 5 s. After `give_up_after_s` the last error is raised: by
    then the record's own TTL is the safety net. A shutdown cancels the wait."""
    delay, deadline = 0.2, time.monotonic() + give_up_after_s
    while True:
        try:
            return await make()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s failed, retrying: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

"""Ending background tasks at shutdown, for certain."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

RECANCEL_EVERY_S = 0.1  # the bot's tasks clean up without awaiting (the records stay in Redis): no need to wait longer


async def cancel_and_wait(tasks: Iterable[asyncio.Task], recancel_every_s: float = RECANCEL_EVERY_S) -> None:
    """Cancel the tasks and wait until every one has ended; their results and errors are discarded.

    One cancel() is not always enough on Python 3.11. redis-py (8 and later: `socket_timeout` is 5 s by
    default) sends every command through `asyncio.wait_for`, and 3.11's wait_for returns the finished result
    and drops a cancellation that arrives in the same turn of the loop (CPython gh-86296, fixed in 3.12). A
    task looping over Redis calls then goes on as if never cancelled (17 % of cancels in a loop of short
    XREADs; a test's teardown waited for its 300 s timeout, a bot's close() for ever). So a task still running
    is cancelled again, after a random part of `recancel_every_s` and not at a fixed period: Redis answers a
    blocking read on its own clock (`hz`, 10 ticks a second by default; an XREAD BLOCK 1 returns after 100 ms), so a
    loop of such reads came back every 100 ms, and re-cancels 0.1 s apart kept landing in the same lost moment (41
    in a row, 4 s, measured with a 1 ms block)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_every_s * random.uniform(0.2, 1.0))
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit

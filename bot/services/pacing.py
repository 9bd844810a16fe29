"""Token buckets that keep the bot under Telegram's flood limits instead of running into them.

Telegram allows about 30 messages a second for a whole bot, about one a second in a private chat and 20 a
minute in a group, with short bursts tolerated; edits count like sends. One bucket holds the bot's budget, one
per chat holds that chat's. Essential calls (a final answer, a reply to a command) wait for a token; progress
edits take one only while a reserve is left, so they never delay an essential call, and are skipped otherwise
(the next one carries the same text). Waiting beforehand costs less than a 429: that makes the chat quiet for
`retry_after` (a second at least) and counts against the bot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

CHAT_BURST = 3.0  # calls a quiet chat may take at once (the local Bot API emulates Telegram with 3)


class TokenBucket:
    def __init__(self, per_second: float, capacity: float, reserve: float):
        self.per_second = per_second
        self.capacity = capacity
        self.reserve = reserve  # tokens that optional calls leave for essential ones
        self.tokens = capacity
        self._updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.per_second)
        self._updated = now

    def try_take(self) -> bool:
        """For an optional call: a token if more than the reserve is left."""
        self._refill()
        if self.tokens < 1 + self.reserve:
            return False
        self.tokens -= 1
        return True

    def wait_s(self) -> float:
        """How long until an essential call may take a token."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second

    async def take(self) -> None:
        while True:
            wait = self.wait_s()
            if wait <= 0:
                self.tokens -= 1
                return
            await asyncio.sleep(wait)

    def put_back(self) -> None:
        """A token taken for a call that was not made after all."""
        self.tokens = min(self.capacity, self.tokens + 1)

    def drain(self) -> None:
        """After a 429: Telegram thinks we went too fast, so start again from an empty bucket."""
        self._refill()
        self.tokens = 0.0

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.capacity


def bot_budget(per_second: float) -> TokenBucket:
    """The whole bot's sends and edits. The bucket holds 0.2 s of budget, so any one second sees at most
    1.2 × per_second; progress edits leave half of it to essential calls."""
    capacity = max(1.0, 0.2 * per_second)
    return TokenBucket(per_second, capacity, reserve=0.5 * capacity)


@dataclass
class ChatPace:
    """One chat's pace (a call every `interval_s` on average, bursts of CHAT_BURST) and flood-control state.
    Times are time.monotonic()."""

    bucket: TokenBucket
    quiet_until: float = 0.0  # after a 429: no call at all before this
    next_edit: float = 0.0  # progress edits are also spaced by the interval, whatever the bucket holds
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one essential call at a time

    @classmethod
    def every(cls, interval_s: float) -> ChatPace:
        # a reserve of one token: the final answer or the next placeholder never waits for a progress edit
        return cls(TokenBucket(1 / max(interval_s, 1e-3), CHAT_BURST, reserve=1.0))

    def flood_controlled(self, retry_after_s: float) -> None:
        self.quiet_until = time.monotonic() + retry_after_s
        self.bucket.drain()

    def forgettable(self, now: float) -> bool:
        return not self.turn.locked() and max(self.quiet_until, self.next_edit) <= now and self.bucket.full

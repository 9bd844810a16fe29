"""Telegram's flood limits (switchable) and injected faults for tests and fault benchmarks."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ApiError, too_many_requests

# Methods that put a message into a chat or change one: what Telegram's per-chat limits count.
COUNTED_METHODS = {
    "sendmessage",
    "sendphoto",
    "senddocument",
    "sendmediagroup",
    "sendsticker",
    "sendvoice",
    "sendvideo",
    "sendanimation",
    "sendaudio",
    "copymessage",
    "forwardmessage",
    "editmessagetext",
    "editmessagecaption",
    "editmessagemedia",
    "editmessagereplymarkup",
}


@dataclass
class Fault:
    """One rule: answer matching calls with an error (or a delay) for `count` calls and/or until `until`."""

    kind: str  # "retry_after", "server_error" or "delay"
    method: str | None = None  # lower-case method name; None matches every API call
    count: int | None = None  # calls left; None: unlimited (until `until`)
    until: float | None = None  # time.monotonic() deadline; None: until `count` runs out
    retry_after: int = 1
    status: int = 500
    delay: float = 0.0

    def active(self, now: float) -> bool:
        return (self.count is None or self.count > 0) and (self.until is None or now < self.until)

    def to_json(self) -> dict[str, Any]:
        left = None if self.until is None else max(0.0, self.until - time.monotonic())
        return {
            "kind": self.kind,
            "method": self.method,
            "count": self.count,
            "seconds_left": left,
            "retry_after": self.retry_after,
            "status": self.status,
            "delay": self.delay,
        }


_SERVER_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FaultInjector:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(
        self,
        kind: str,
        *,
        method: str | None = None,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: int = 1,
        status: int = 500,
        delay: float = 0.0,
    ) -> Fault:
        if kind not in ("retry_after", "server_error", "delay"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if count is None and seconds is None:
            count = 1
        until = time.monotonic() + seconds if seconds is not None else None
        fault = Fault(kind, method.lower() if method else None, count, until, retry_after, status, delay)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take(self, method: str) -> Fault | None:
        """The first active fault matching this call, with one use consumed."""
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.active(now)]
        for fault in self.faults:
            if fault.method in (None, method):
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None

    @staticmethod
    def error(fault: Fault) -> ApiError:
        if fault.kind == "retry_after":
            return too_many_requests(fault.retry_after)
        return ApiError(fault.status, _SERVER_ERRORS.get(fault.status, "Internal Server Error"))


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimits:
    """Token buckets per chat and per bot. Telegram publishes only rough figures: ≈1 message/s in a private
    chat (short bursts tolerated), 20 messages/minute in a group, ≈30 messages/s overall; edits count."""

    enabled: bool = False
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 5
    global_per_second: float = 30.0
    _buckets: dict[Any, _Bucket] = field(default_factory=dict, repr=False)

    def configure(self, **settings: Any) -> None:
        for key, value in settings.items():
            if key.startswith("_") or key not in {f.name for f in fields(self)}:
                raise ValueError(f"unknown rate limit setting {key!r}")
            current = getattr(self, key)
            if isinstance(current, bool) and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            setattr(self, key, type(current)(value))
        self._buckets.clear()

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def check(self, bot_id: int, chat_id: int, is_group: bool) -> None:
        """Raises 429 (with retry_after) when this message would exceed a limit; otherwise counts it."""
        if not self.enabled:
            return
        if is_group:
            chat_rate, chat_burst = self.group_per_minute / 60.0, self.group_burst
        else:
            chat_rate, chat_burst = self.private_per_second, self.private_burst
        limits = [
            ((bot_id, chat_id), chat_rate, chat_burst),
            ((bot_id, None), self.global_per_second, self.global_per_second),
        ]
        now = time.monotonic()
        waits = [self._wait(key, rate, burst, now) for key, rate, burst in limits]
        if any(w > 0 for w in waits):
            raise too_many_requests(max(1, math.ceil(max(waits))))
        for key, _rate, _burst in limits:
            self._buckets[key].tokens -= 1.0

    def _wait(self, key: Any, rate: float, burst: float, now: float) -> float:
        bucket = self._buckets.setdefault(key, _Bucket(tokens=float(burst), stamp=now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / rate

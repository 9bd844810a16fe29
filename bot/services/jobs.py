"""The bot's side of the wire protocol (CONTRACT.md, model/protocol.py): queue jobs, read their replies,
cancel them, and look at the queue and the workers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot import keys
from model import protocol
from model.config import PRESETS

_CANCEL_TTL_S = 600  # as the contract says
_OWNED_JOBS = 50  # a user's latest job entries remembered for /forget (answered ones are trimmed within an hour)
_OWNED_JOBS_TTL_S = 86400


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class QueueState:
    waiting: int  # not yet taken by any worker
    running: int  # taken, not yet acknowledged
    workers: int  # live heartbeats


class JobSubmitter:
    # Every answer waiting in the queue asks for its position and for live workers every few seconds: both
    # are cached briefly, so a thousand waiting answers cost a few Redis calls a second, not thousands.
    CACHE_S = 1.0

    def __init__(self, redis: Redis):
        self.redis = redis
        self._workers: tuple[float, int] = (0.0, 0)
        self._presets: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._group: tuple[float, tuple[tuple[int, int], dict[str, Any] | None]] = (0.0, ((0, 0), None))

    async def submit(self, job: protocol.Job, owner: int) -> str:
        """XADD the job; returns its stream entry id (needed to tell its queue position). The entry is
        remembered as `owner`'s: it holds their dialog, which /forget deletes."""
        entry_id = (await self.redis.xadd(protocol.JOBS_STREAM, {"job": job.to_json()})).decode()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.jobs_of(owner), entry_id)
            pipe.ltrim(keys.jobs_of(owner), 0, _OWNED_JOBS - 1)
            pipe.expire(keys.jobs_of(owner), _OWNED_JOBS_TTL_S)
            await pipe.execute()
        return entry_id

    async def delete_entries(self, entry_ids: list[str]) -> None:
        if entry_ids:
            await self.redis.xdel(protocol.JOBS_STREAM, *entry_ids)

    async def cancel(self, job_id: str) -> None:
        await self.redis.set(protocol.cancel_key(job_id), 1, ex=_CANCEL_TTL_S)

    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self.redis.exists(protocol.cancel_key(job_id)))

    async def withdraw(self, entry_id: str) -> None:
        """Remove a job no worker has taken yet (cancelled, or expired while every worker was down).
        If a worker takes it in the same instant, the cancel key still stops it."""
        await self.redis.xdel(protocol.JOBS_STREAM, entry_id)

    async def forget(self, job_id: str) -> None:
        """After delivery nobody reads the reply stream again. (A cancel flag stays until its TTL: a worker
        that took the job in the last instant must still see it.)"""
        await self.redis.delete(protocol.reply_key(job_id))

    async def _last_delivered(self, fresh: bool = False) -> tuple[tuple[int, int], dict[str, Any] | None]:
        at, value = self._group
        if not fresh and time.monotonic() - at < self.CACHE_S:
            return value
        value = await self._read_group()
        self._group = (time.monotonic(), value)
        return value

    async def _read_group(self) -> tuple[tuple[int, int], dict[str, Any] | None]:
        try:
            groups = await self.redis.xinfo_groups(protocol.JOBS_STREAM)
        except ResponseError:  # no stream yet
            return (0, 0), None
        for group in groups:
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == protocol.GROUP:
                return _stream_id(group["last-delivered-id"]), group
        return (0, 0), None  # no worker ever connected: everything is waiting

    async def ahead_of(self, entry_id: str, cap: int = 100) -> int | None:
        """How many jobs still wait before this one (at most `cap`); None once a worker has taken it."""
        last, _ = await self._last_delivered()
        if _stream_id(entry_id) <= last:
            return None
        start = f"({last[0]}-{last[1]}"
        ahead = await self.redis.xrange(protocol.JOBS_STREAM, min=start, max=f"({entry_id}", count=cap)
        return len(ahead)

    async def exists(self, entry_id: str) -> bool:
        """Is the job still in the stream? (Gone after a Redis restart without data, or a withdrawal.)"""
        return bool(await self.redis.xrange(protocol.JOBS_STREAM, min=entry_id, max=entry_id, count=1))

    async def workers_alive(self, fresh: bool = False) -> int:
        at, count = self._workers
        if fresh or time.monotonic() - at >= self.CACHE_S:
            count = 0
            async for _ in self.redis.scan_iter(match=protocol.HEARTBEAT_PATTERN, count=1000):
                count += 1
            self._workers = (time.monotonic(), count)
        return count

    async def presets(self) -> frozenset[str]:
        """The model presets live workers run (from their heartbeats), cached like the worker count."""
        at, found = self._presets
        if time.monotonic() - at < self.CACHE_S:
            return found
        names = set()
        async for key in self.redis.scan_iter(match=protocol.HEARTBEAT_PATTERN, count=1000):
            try:
                beat = json.loads(await self.redis.get(key) or b"{}")
            except ValueError:  # a heartbeat from an older worker, or not JSON at all: no preset known
                continue
            if isinstance(beat, dict) and isinstance(beat.get("preset"), str):
                names.add(beat["preset"])
        self._presets = (time.monotonic(), frozenset(names))
        return self._presets[1]

    async def model_context(self) -> int | None:
        """The smallest context, in tokens, of the models live workers run (their heartbeats name the preset);
        None when no worker says."""
        contexts = [PRESETS[name].llm_max_context for name in await self.presets() if name in PRESETS]
        return min(contexts) if contexts else None

    async def state(self) -> QueueState:
        _, group = await self._last_delivered(fresh=True)
        if group is None:
            try:
                waiting = await self.redis.xlen(protocol.JOBS_STREAM)
            except ResponseError:
                waiting = 0
            running = 0
        else:
            lag = group.get("lag")  # Redis cannot tell it after an XDEL in the range: count then
            if lag is None:
                last = _stream_id(group["last-delivered-id"])
                lag = len(
                    await self.redis.xrange(protocol.JOBS_STREAM, min=f"({last[0]}-{last[1]}", count=10_000)
                )
            waiting = int(lag)
            running = int(group.get("pending", 0))
        return QueueState(waiting=waiting, running=running, workers=await self.workers_alive(fresh=True))

"""Test tools for the bot: the real bot (same factories as `python -m bot`) against the local Bot API server
over real HTTP, real Redis, and either a scripted stand-in for the worker (unit level) or the real
`python -m model.worker` on the tiny preset (end to end)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from PIL import Image
from redis.asyncio import Redis

from bot.app import create_bot, create_dispatcher, create_redis
from bot.services.stopping import cancel_and_wait
from bot.settings import Settings
from local_bot_api import LocalBotAPI
from model import protocol

ADMIN_ID = 42
BOT_USERNAME = "omni_test_bot"


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


async def wait_until(
    predicate: Callable[[], Any], within_s: float = 10.0, what: str = "condition", every_s: float = 0.05
) -> Any:
    """Poll an (async or plain) predicate until truthy; for Redis-side conditions the server cannot see."""
    deadline = time.monotonic() + within_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)


class BotUnderTest:
    """One bot process' worth of objects. `pump()` feeds pending updates through `dp.feed_update`;
    `start_polling()` runs the real polling loop instead."""

    def __init__(self, server: LocalBotAPI, redis_url: str, **overrides: Any):
        values = {
            "bot_token": server.bot().token,
            "telegram_api_url": server.base_url,
            "redis_url": redis_url,
            "admin_ids": str(ADMIN_ID),
            "metrics_port": 0,
            "album_wait_s": 0.3,
            "document_timeout_s": 60.0,  # a busy test machine may take seconds just to start the PDF reader
            "log_format": "text",
            **overrides,
        }
        self.server = server
        self.settings = Settings(_env_file=None, **values)
        self.bot = create_bot(self.settings)
        self.redis = create_redis(self.settings)
        self.dp = create_dispatcher(self.settings, self.bot, self.redis)
        self._offset = 0
        self._polling: asyncio.Task | None = None

    def __getattr__(self, name: str) -> Any:  # services: harness.turns, harness.access, ...
        try:
            return self.dp.workflow_data[name]
        except KeyError:
            raise AttributeError(name) from None

    async def startup(self) -> None:
        await self.dp.emit_startup(bot=self.bot, **self.dp.workflow_data)

    async def pump(self) -> int:
        """Feed every pending update through the real Dispatcher (concurrently: an album's items must be
        in flight together); returns how many there were."""
        # the update types the routers handle, as polling and the webhook ask for (message_reaction
        # only reaches a bot that asks)
        allowed = self.dp.resolve_used_update_types()
        updates = await self.bot.get_updates(offset=self._offset, timeout=0, allowed_updates=allowed)
        if updates:
            self._offset = updates[-1].update_id + 1
        await asyncio.gather(*(self.dp.feed_update(self.bot, update) for update in updates))
        return len(updates)

    async def start_polling(self) -> None:
        self._polling = asyncio.create_task(
            self.dp.start_polling(self.bot, handle_signals=False, polling_timeout=1)
        )
        await wait_until(lambda: self.server.calls["getUpdates"] > 0, what="polling to start")

    async def stop(self) -> None:
        """Like SIGTERM: polling ends, shutdown hooks run (deliveries stop, their records stay in Redis)."""
        if self._polling:
            await self.dp.stop_polling()
            await self._polling
            self._polling = None
        else:
            await self.dp.emit_shutdown(bot=self.bot, **self.dp.workflow_data)
            await self.bot.session.close()

    async def finish_answers(self, within_s: float = 30.0) -> None:
        await asyncio.wait_for(self.delivery.wait_idle(), within_s)


class ScriptedWorker:
    """The other side of the wire protocol, scripted: takes jobs from the consumer group like a worker and
    answers with `script(job) -> list of events` (dicts; {"sleep": s} pauses). For unit-level tests only;
    end-to-end tests use the real worker."""

    def __init__(self, redis_url: str, script: Callable[[protocol.Job], list[dict[str, Any]]] | None = None):
        self.redis = Redis.from_url(redis_url)
        self.script = script or (
            lambda job: [
                protocol.delta_event("Hello "),
                protocol.delta_event("there."),
                protocol.done_event("Hello there.", "stop", 2),
            ]
        )
        self.jobs: list[protocol.Job] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> ScriptedWorker:
        try:
            await self.redis.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: already there
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.set(protocol.heartbeat_key("scripted"), 1, ex=60)
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait([self._task])  # one cancel() may be lost in a Redis call (see there)
        await self.redis.delete(protocol.heartbeat_key("scripted"))
        await self.redis.aclose()

    async def _serve(self) -> None:
        while True:
            found = await self.redis.xreadgroup(
                protocol.GROUP, "scripted", {protocol.JOBS_STREAM: ">"}, count=10, block=200
            )
            for _, entries in found or []:
                for entry_id, fields in entries:
                    job = protocol.parse_job(fields[b"job"])
                    self.jobs.append(job)
                    asyncio.create_task(self._answer(entry_id, job))  # noqa: RUF006 - ended with the loop

    async def _answer(self, entry_id: bytes, job: protocol.Job) -> None:
        for event in self.script(job):
            if "sleep" in event:
                await asyncio.sleep(event["sleep"])
                continue
            if await self.redis.exists(protocol.cancel_key(job.id)):
                event = protocol.done_event("", "cancelled", 0)
            await self.redis.xadd(job.reply, event)
            await self.redis.expire(job.reply, 600)
            if event["event"] in ("done", "error"):
                break
        await self.redis.xack(protocol.JOBS_STREAM, protocol.GROUP, entry_id)


class RealWorker:
    """`python -m model.worker` on the tiny preset, as a subprocess with its log in a file. Synchronous, so a
    module-scoped fixture can share one worker between tests (it starts in seconds, but not in no time)."""

    def __init__(self, redis_url: str, log_path: Path, **env: str):
        self.redis_url = redis_url
        self.log_path = log_path
        self.env = {**os.environ, "MODEL_PRESET": "tiny", "REDIS_URL": redis_url, "DEVICE": "cpu", **env}
        self.process: subprocess.Popen | None = None

    def start(self, within_s: float = 120.0) -> RealWorker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "model.worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + within_s
        try:
            while not client.keys(protocol.HEARTBEAT_PATTERN):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not come up:\n{self.log()[-3000:]}")
                time.sleep(0.1)
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def last_job(redis: Redis) -> protocol.Job:
    entries = await redis.xrevrange(protocol.JOBS_STREAM, count=1)
    return protocol.parse_job(entries[0][1][b"job"])


async def all_jobs(redis: Redis) -> list[protocol.Job]:
    return [protocol.parse_job(fields[b"job"]) for _, fields in await redis.xrange(protocol.JOBS_STREAM)]


async def watch_reply(redis: Redis, job_id: str, within_s: float = 60.0) -> list[dict[str, Any]]:
    """Every event the worker writes for a job, until the final one (read beside the bot, like a tap)."""
    events: list[dict[str, Any]] = []
    after = "0-0"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = await redis.xread({protocol.reply_key(job_id): after}, block=200)
        for _, entries in found or []:
            for entry_id, fields in entries:
                after = entry_id
                events.append(protocol.decode_event(fields))
                if events[-1]["event"] in ("done", "error"):
                    return events
    raise TimeoutError(f"no final event for job {job_id}: {json.dumps(events)[:500]}")

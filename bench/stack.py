"""The whole product on one machine, for load and fault runs: the local Bot API server (in this process, so a
run can read transcripts and inject faults directly), the real bot (`python -m bot`, pointed at the server
with TELEGRAM_API_URL) and real workers (`python -m model.worker`, tiny preset) as subprocesses, and Redis:
a database of the shared server taken under the test suite's lock, or a private redis-server that a fault run
may restart. Every process logs to a file in `log_dir`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.asyncio import Redis

from local_bot_api import LocalBotAPI
from model import protocol
from tests.bot_harness import wait_until
from tests.conftest import REDIS_HOST, REDIS_PORT, acquire_db, release_db

ROOT = Path(__file__).resolve().parent.parent
BOT_USERNAME = "omnifusion_load_bot"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def claimed_database() -> Iterator[str]:
    """A database (1..15) of the shared Redis that no test or other run holds (the test suite's own lock),
    flushed before and after."""
    db = acquire_db()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        release_db(db)


class RedisServer:
    """A redis-server of our own on a free port, so a fault run may stop and restart it. `persistent`: AOF
    with fsync every second (what docs/operations.md recommends); otherwise nothing ever reaches the disk."""

    def __init__(self, data_dir: Path, persistent: bool, log_path: Path | None = None):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.data_dir = data_dir
        self.persistent = persistent
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._launch()
        client = Redis(port=self.port)
        try:
            await wait_until(lambda: _pings(client), 20, "redis-server to answer")
        finally:
            await client.aclose()

    def _launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistent else [
            "--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.data_dir), *durability,
             *(["--logfile", str(self.log_path)] if self.log_path else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self, graceful: bool = True) -> None:
        """graceful: SIGTERM (Redis flushes its AOF); otherwise SIGKILL, like a crash or a lost machine."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            self.process.wait(20)


async def _pings(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


class Stack:
    """Server, bot and workers. `bot_env` / `worker_env` are settings for those processes (docs/bot.md,
    docs/worker.md), e.g. {"MAX_NEW_TOKENS": "32"}."""

    def __init__(self, redis_url: str, log_dir: Path, workers: int = 1, bot_env: dict[str, str] | None = None,
                 worker_env: dict[str, str] | None = None, flood_limits: bool = False):
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.worker_names = [f"w{i}" for i in range(workers)]
        self.bot_env = bot_env or {}
        self.worker_env = worker_env or {}
        self.server = LocalBotAPI(bot_username=BOT_USERNAME, rate_limits=flood_limits)
        self.redis = Redis.from_url(redis_url)
        self.bot: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    async def __aenter__(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self.server.start()
        try:
            await asyncio.gather(*(self.start_worker(name) for name in self.worker_names))
            await self.start_bot()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.to_thread(self.stop_bot)
        await asyncio.gather(*(asyncio.to_thread(self.stop_worker, name) for name in list(self.workers)))
        await self.server.stop()
        await self.redis.aclose()

    def _spawn(self, args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        full_env = {**os.environ, "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1", **env}
        with open(self.log_dir / log_name, "ab") as log:
            return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full_env, stdout=log,
                                    stderr=subprocess.STDOUT)

    # --- workers ------------------------------------------------------------------------------------------
    async def start_worker(self, name: str, within_s: float = 180.0) -> None:
        """Start (or restart: same name, so it re-runs its own pending jobs at once) and wait for its heartbeat."""
        env = {"MODEL_PRESET": "tiny", "DEVICE": "cpu", "WORKER_NAME": name, **self.worker_env}
        # A killed worker's heartbeat outlives it (TTL): wait for one written by the new process.
        previous = await self._heartbeat(name)
        process = self._spawn(["-m", "model.worker"], env, f"worker-{name}.log")
        self.workers[name] = process

        async def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited with {process.returncode}; see {self.log_dir}")
            beat = await self._heartbeat(name)
            return beat is not None and beat.get("started") != (previous or {}).get("started")

        await wait_until(ready, within_s, f"worker {name} to come up", every_s=0.1)

    async def _heartbeat(self, name: str) -> dict | None:
        try:
            raw = await self.redis.get(protocol.heartbeat_key(name))
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return json.loads(raw) if raw else None

    def kill_worker(self, name: str) -> None:
        """SIGKILL: no drain, no hand-back; its jobs stay pending in the consumer group."""
        process = self.workers.pop(name)
        process.kill()
        process.wait(10)

    def stop_worker(self, name: str) -> None:
        process = self.workers.pop(name, None)
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    # --- the bot --------------------------------------------------------------------------------------------
    async def start_bot(self, within_s: float = 180.0) -> None:  # a loaded 2-core machine: imports take long
        env = {
            "BOT_TOKEN": self.server.bot().token,
            "TELEGRAM_API_URL": self.server.base_url,
            "METRICS_PORT": "0",
            "LOG_FORMAT": "json",
            "DEFAULT_RATE_LIMIT": "1000/hour",  # simulated users are not what the limit is about
            **self.bot_env,
        }
        polls_before = self.server.calls["getUpdates"]
        self.bot = self._spawn(["-m", "bot"], env, "bot.log")

        def polling() -> bool:
            if self.bot.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.bot.returncode}; see {self.log_dir}/bot.log")
            return self.server.calls["getUpdates"] > polls_before

        await wait_until(polling, within_s, "the bot to poll")

    def stop_bot(self) -> int | None:
        """SIGTERM and wait; the bot's exit code (None if it had to be killed)."""
        if self.bot is None or self.bot.poll() is not None:
            return self.bot.returncode if self.bot else None
        self.bot.terminate()
        try:
            return self.bot.wait(30)
        except subprocess.TimeoutExpired:
            self.bot.kill()
            self.bot.wait(10)
            return None

    def crashed(self) -> list[str]:
        """Processes that died on their own (nothing may crash in a fault run)."""
        dead = [f"worker {n} (exit {p.returncode})" for n, p in self.workers.items() if p.poll() is not None]
        if self.bot is not None and self.bot.poll() is not None:
            dead.append(f"bot (exit {self.bot.returncode})")
        return dead

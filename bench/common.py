"""Shared bits of the benchmarks: a private Redis database, a worker subprocess, job round trips."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import protocol  # noqa: E402
from tests.worker_helpers import events, start_worker_process, submit, wait_ready  # noqa: E402, F401


@contextlib.contextmanager
def private_redis():
    """A scratch database of the shared Redis that no test or other run holds (taken with the test suite's
    lock, flushed before and after), so a benchmark never touches real data or a running test's data."""
    from stack import claimed_database

    with claimed_database() as url:
        client = redis.Redis.from_url(url)
        try:
            yield url, client
        finally:
            client.close()


@contextlib.contextmanager
def worker_process(redis_url: str, preset: str, name: str = "bench", device: str | None = None, **env):
    """A real worker subprocess on `preset`, up once its heartbeat appears; stopped with SIGTERM after."""
    proc = start_worker_process(redis_url, name, output=subprocess.DEVNULL, model_preset=preset,
                                device=device or os.environ.get("DEVICE", "auto"), **env)
    try:
        wait_ready(redis.Redis.from_url(redis_url), name, proc, timeout=300)
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def wait_done(client, job: protocol.Job, timeout: float = 600) -> dict:
    """The job's `done` event (read from its reply stream as the bot reads it); an `error` raises."""
    final = events(client, job.reply, timeout=timeout)[-1]
    if final["event"] == "error":
        raise RuntimeError(f"job failed: {final}")
    return final

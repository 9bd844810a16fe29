"""Shared bits of the benchmarks: a private Redis database, a worker subprocess, job round trips."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import protocol  # noqa: E402


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
def worker_process(redis_url: str, preset: str, name: str = "bench", **env):
    full = {**os.environ, "REDIS_URL": redis_url, "MODEL_PRESET": preset, "DEVICE": os.environ.get("DEVICE", "auto"),
            "WORKER_NAME": name, **{k.upper(): str(v) for k, v in env.items()}}
    proc = subprocess.Popen([sys.executable, "-m", "model.worker"], cwd=ROOT, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 300
        while not client.exists(protocol.heartbeat_key(name)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def submit(client, messages, params) -> protocol.Job:
    job = protocol.new_job(messages, params)
    client.xadd(protocol.JOBS_STREAM, {"job": job.to_json()})
    return job


def wait_done(client, job: protocol.Job, timeout: float = 600) -> dict:
    last, deadline = "0", time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.xread({job.reply: last}, block=1000)
        for entry_id, fields in (resp[0][1] if resp else []):
            last = entry_id
            event = protocol.decode_event(fields)
            if event["event"] == "done":
                return event
            if event["event"] == "error":
                raise RuntimeError(f"job failed: {event}")
    raise TimeoutError(job.id)

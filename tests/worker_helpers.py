"""Driving workers from tests: submit jobs the way the bot does, read reply streams, run workers in threads
(to count calls inside the model) or as real subprocesses (to kill them)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from model import protocol
from tests.model_helpers import drawn_image, png_bytes

ROOT = Path(__file__).resolve().parent.parent
# The shortest lease the settings accept, renewed as often as they allow: takeovers within ~1-3 s.
SHORT_LEASE = {"worker_visibility_timeout_s": 1.0, "worker_claim_refresh_s": 0.25}


def store_image(client: redis.Redis, img=None) -> str:
    data = png_bytes(img or drawn_image())
    key = protocol.image_key_for(data)
    client.set(key, data, ex=600)
    return key


def submit(client: redis.Redis, messages, params=None, timeout_s=300.0, raw: str | None = None) -> protocol.Job:
    job = protocol.new_job(messages, {"stop": [], "wrap_up": 0, **(params or {})}, timeout_s=timeout_s)
    client.xadd(protocol.JOBS_STREAM, {"job": raw if raw is not None else job.to_json()})
    return job


def events(client: redis.Redis, reply: str, timeout: float = 30.0, until_final: bool = True) -> list[dict]:
    """Read a reply stream from its start until a final event (done/error), or until `timeout`."""
    out, last, deadline = [], "0", time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.xread({reply: last}, block=200)
        for entry_id, fields in (resp[0][1] if resp else []):
            last = entry_id
            out.append(protocol.decode_event(fields))
            if until_final and out[-1]["event"] in ("done", "error"):
                return out
    if until_final:
        raise AssertionError(f"no final event on {reply} within {timeout}s; got {out}")
    return out


def answered_once(evs: list[dict]) -> list[str]:
    """Exactly one final event, a `done`, last; the deltas after the last `restart` add up to its text."""
    kinds = [e["event"] for e in evs]
    assert kinds.count("done") + kinds.count("error") == 1 and kinds[-1] == "done", kinds
    start = len(kinds) - kinds[::-1].index("restart") if "restart" in kinds else 0
    assert "".join(e["text"] for e in evs[start:-1]) == evs[-1]["text"]
    return kinds


def wait_for(condition, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


@contextlib.contextmanager
def worker_thread(redis_url: str, model, **overrides):
    from model.serving.settings import WorkerSettings
    from model.serving.worker import Worker

    settings = WorkerSettings(redis_url=redis_url, worker_name=overrides.pop("worker_name", "t-worker"),
                              **overrides)
    worker = Worker(settings, model=model)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", worker.run(install_signals=False)),
                              daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker thread did not stop"
        assert result.get("rc") == 0


def start_worker_process(redis_url: str, name: str, output=subprocess.PIPE, **env) -> subprocess.Popen:
    """`python -m model.worker` (tiny preset, CPU unless `env` says otherwise). Long runs should pass
    output=subprocess.DEVNULL: nobody reads the pipe until the worker exits, and a full pipe would stall it."""
    full_env = {**os.environ, "REDIS_URL": redis_url, "MODEL_PRESET": "tiny", "DEVICE": "cpu",
                "WORKER_NAME": name, **{k.upper(): str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, "-m", "model.worker"], cwd=ROOT, env=full_env,
                            stdout=output, stderr=subprocess.STDOUT, text=True)


def wait_ready(client: redis.Redis, name: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        return client.exists(protocol.heartbeat_key(name))
    wait_for(ready, timeout)

"""Real worker processes: kill -9 mid-generation loses nothing; SIGTERM drains and exits 0."""

import signal

from model import protocol
from tests.worker_helpers import SHORT_LEASE, events, start_worker_process, submit, wait_for, wait_ready

LONG = {"max_new_tokens": 1900}


def stop(proc, sig=signal.SIGTERM, timeout=60):
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def test_kill_9_mid_generation_second_worker_finishes_every_job(redis_url, redis_client):
    a = start_worker_process(redis_url, "w-a", worker_max_batch=4, worker_delta_interval_s=0, **SHORT_LEASE)
    b = None
    try:
        wait_ready(redis_client, "w-a", a)
        jobs = [submit(redis_client, [{"role": "user", "content": f"story {i}"}], LONG) for i in range(4)]
        wait_for(lambda: all(redis_client.xlen(j.reply) >= 2 for j in jobs), timeout=120)
        a.kill()
        a.wait(10)
        assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 4
        b = start_worker_process(redis_url, "w-b", worker_max_batch=4, **SHORT_LEASE)
        for j in jobs:
            evs = events(redis_client, j.reply, timeout=120)
            kinds = [e["event"] for e in evs]
            assert kinds.count("done") == 1 and kinds[-1] == "done"
            assert kinds.count("restart") == 1 and kinds.index("restart") > 0
            after = evs[kinds.index("restart") + 1:]
            assert "".join(e["text"] for e in after[:-1]) == after[-1]["text"]
        wait_for(lambda: redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0)
        assert redis_client.xlen(protocol.DEAD_STREAM) == 0
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()


def test_sigterm_finishes_jobs_in_flight_and_exits_0(redis_url, redis_client):
    w = start_worker_process(redis_url, "w-term", worker_delta_interval_s=0)
    try:
        wait_ready(redis_client, "w-term", w)
        job = submit(redis_client, [{"role": "user", "content": "hello"}], {"max_new_tokens": 300})
        wait_for(lambda: redis_client.xlen(job.reply) >= 1)
        assert stop(w) == 0
        evs = events(redis_client, job.reply, timeout=5)
        assert evs[-1]["event"] == "done" and evs[-1]["tokens"] == 300
        assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0
        assert not redis_client.exists(protocol.heartbeat_key("w-term"))
    finally:
        if w.poll() is None:
            w.kill()


def test_sigterm_hands_back_what_cannot_finish_in_time(redis_url, redis_client):
    w = start_worker_process(redis_url, "w-slow", worker_drain_timeout_s=0.2, worker_delta_interval_s=0)
    try:
        wait_ready(redis_client, "w-slow", w)
        job = submit(redis_client, [{"role": "user", "content": "hello"}], {"max_new_tokens": 1900})
        wait_for(lambda: redis_client.xlen(job.reply) >= 1)
        assert stop(w) == 0
        pending = redis_client.xpending_range(protocol.JOBS_STREAM, protocol.GROUP, "-", "+", 10)
        assert len(pending) == 1 and pending[0]["time_since_delivered"] > 10**8  # looks long idle
        # the next worker takes it over at once, even with a long visibility timeout
        w = start_worker_process(redis_url, "w-next", worker_visibility_timeout_s=600)
        evs = events(redis_client, job.reply, timeout=120)
        assert [e["event"] for e in evs].count("restart") == 1 and evs[-1]["event"] == "done"
    finally:
        if w.poll() is None:
            w.kill()

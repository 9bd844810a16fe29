"""No double execution: a job runs under a lease only its holder can renew, every write for it checks the
lease, and a worker that stalled past its lease writes nothing more. Real Redis, real worker processes."""

import signal
import time

import pytest
from pydantic import ValidationError

from model import protocol
from model.serving.jobs import JobConsumer
from model.serving.settings import WorkerSettings
from tests.worker_helpers import (
    SHORT_LEASE,
    answered_once,
    events,
    start_worker_process,
    submit,
    wait_for,
    wait_ready,
    worker_thread,
)


def consumer(client, name, lease_s=0.3):
    c = JobConsumer(client, name, reply_ttl_s=60, max_deliveries=3, lease_s=lease_s)
    c.ensure_group()
    return c


def restarted(client, reply) -> bool:
    return any(fields.get(b"event") == b"restart" for _, fields in client.xrange(reply))


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


def test_a_stalled_worker_loses_its_jobs_and_writes_nothing_more(redis_url, redis_client, model):
    a = start_worker_process(redis_url, "w-stall", worker_max_batch=4, worker_delta_interval_s=0,
                             omp_num_threads=1, **SHORT_LEASE)
    try:
        wait_ready(redis_client, "w-stall", a)
        jobs = [submit(redis_client, [{"role": "user", "content": "hello"}], {"max_new_tokens": 600})
                for _ in range(4)]
        wait_for(lambda: all(redis_client.xlen(j.reply) >= 2 for j in jobs), timeout=120)
        a.send_signal(signal.SIGSTOP)  # a worker that stalls mid-generation (swap, a debugger, a GC pause)
        with worker_thread(redis_url, model, worker_name="w-live", worker_max_batch=4, **SHORT_LEASE):
            time.sleep(2 * SHORT_LEASE["worker_visibility_timeout_s"])
            wait_for(lambda: all(restarted(redis_client, j.reply) for j in jobs),
                     timeout=60)  # the live worker took every job over while `a` slept
            a.send_signal(signal.SIGCONT)
            for j in jobs:
                assert answered_once(events(redis_client, j.reply, timeout=120)).count("restart") == 1
            wait_for(lambda: redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0)
        time.sleep(1.0)  # `a` runs again: time to write anything it would wrongly write
        for j in jobs:
            answered_once(events(redis_client, j.reply, timeout=0.5, until_final=False))
        assert a.poll() is None and redis_client.xlen(protocol.DEAD_STREAM) == 0
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
    assert "its lease ran out and another worker took it over" in a.stdout.read()  # `a` did try, and stopped


def test_a_live_lease_is_never_taken_over(redis_client):
    job = submit(redis_client, [{"role": "user", "content": "hi"}])
    a, b = consumer(redis_client, "a"), consumer(redis_client, "b")
    [mine] = a.read_new(10, None)
    for _ in range(8):  # 0.8 s: well past the 0.3 s lease, renewed every 0.1 s
        time.sleep(0.1)
        assert a.keep_claimed([mine.entry_id]) == set()
        assert b.claim_orphans(10, min_idle_s=0) == []
    row = redis_client.xpending_range(protocol.JOBS_STREAM, protocol.GROUP, "-", "+", 1)[0]
    assert row["consumer"] == b"a" and row["times_delivered"] == 1  # no claim, no delivery counted
    assert a.finish(mine.entry_id, job.reply, protocol.done_event("ok", "stop", 1))
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0
    assert not redis_client.exists(protocol.lease_key(mine.entry_id))


def test_after_a_takeover_the_old_holder_can_write_nothing(redis_client):
    job = submit(redis_client, [{"role": "user", "content": "hi"}])
    a, b = consumer(redis_client, "a"), consumer(redis_client, "b")
    [old] = a.read_new(10, None)
    assert a.emit([(old.entry_id, job.reply, [protocol.delta_event("from a")])]) == set()
    time.sleep(0.4)  # a stalls past its lease
    [new] = b.claim_orphans(10, min_idle_s=0.3)
    assert (new.entry_id, new.deliveries) == (old.entry_id, 2)
    assert b.emit([(new.entry_id, job.reply, [protocol.restart_event()])]) == set()
    # a wakes up: every write for the job is refused, and so is renewing its lease
    assert a.emit([(old.entry_id, job.reply, [protocol.delta_event("late")])]) == {old.entry_id}
    assert a.finish(old.entry_id, job.reply, protocol.done_event("from a", "stop", 1)) is False
    assert a.keep_claimed([old.entry_id]) == {old.entry_id}
    a.hand_back([old.entry_id])  # and giving it back does not give b's lease away
    assert redis_client.get(protocol.lease_key(old.entry_id)) == b.token.encode()
    assert b.finish(new.entry_id, job.reply, protocol.done_event("from b", "stop", 1))
    evs = events(redis_client, job.reply, timeout=1)
    assert [(e["event"], e.get("text")) for e in evs] == [
        ("delta", "from a"), ("restart", None), ("done", "from b")]
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0


def test_a_restarted_worker_takes_back_its_own_jobs_at_once(redis_client):
    submit(redis_client, [{"role": "user", "content": "hi"}])
    first = consumer(redis_client, "w", lease_s=60)
    [taken] = first.read_new(10, None)
    again = consumer(redis_client, "w", lease_s=60)  # same WORKER_NAME, new process: its predecessor died
    [back] = again.read_own_pending(10)
    assert back.entry_id == taken.entry_id and back.deliveries == 2
    assert redis_client.get(protocol.lease_key(taken.entry_id)) == again.token.encode()
    other = consumer(redis_client, "w2", lease_s=60)
    other.r.xclaim(protocol.JOBS_STREAM, protocol.GROUP, "w2", 0, [taken.entry_id])
    assert other.read_own_pending(10) == []  # another name's live lease is not ours to take


def test_a_second_final_event_is_never_written(redis_client):
    """Two entries of one job (a client that retried its XADD): both may run, only one answer is final."""
    job = submit(redis_client, [{"role": "user", "content": "hi"}])
    redis_client.xadd(protocol.JOBS_STREAM, {"job": job.to_json()})
    a = consumer(redis_client, "a")
    first, second = a.read_new(10, None)
    assert a.finish(first.entry_id, job.reply, protocol.done_event("one", "stop", 1))
    assert a.finish(second.entry_id, job.reply, protocol.done_event("two", "stop", 1))  # acked, not written
    assert [e["text"] for e in events(redis_client, job.reply, timeout=1)] == ["one"]
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0


def test_renewal_must_be_well_inside_the_lease():
    with pytest.raises(ValidationError, match="WORKER_CLAIM_REFRESH_S .* at most a third"):
        WorkerSettings(_env_file=None, worker_visibility_timeout_s=20, worker_claim_refresh_s=10)
    with pytest.raises(ValidationError, match="worker_visibility_timeout_s"):
        WorkerSettings(_env_file=None, worker_visibility_timeout_s=0.05, worker_claim_refresh_s=0.01)
    assert WorkerSettings(_env_file=None, **SHORT_LEASE).worker_claim_refresh_s == 0.25

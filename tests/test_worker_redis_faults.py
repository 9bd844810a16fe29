"""The worker survives Redis going away: a dropped connection (data kept) and a restart that loses everything.
Each test runs its own redis-server on a free port, so the shared one is never touched."""

import shutil
import socket
import subprocess
import time

import pytest
import redis

from model import protocol
from tests.worker_helpers import answered_once, events, start_worker_process, submit, wait_for, wait_ready

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, tmp_path):
        self.port, self.dir = free_port(), tmp_path
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), timeout=20)
        return client

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def _pings(client):
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


def test_dropped_connections_mid_answer(private_redis):
    client = private_redis.start()
    w = start_worker_process(private_redis.url, "w-blip", worker_delta_interval_s=0)
    try:
        wait_ready(client, "w-blip", w)
        job = submit(client, [{"role": "user", "content": "hello"}], {"max_new_tokens": 1900})
        wait_for(lambda: client.xlen(job.reply) >= 2)
        client.client_kill_filter(_type="normal", skipme=True)  # every other client loses its connection
        answered_once(events(client, job.reply, timeout=120))
        assert w.poll() is None
    finally:
        w.kill()


def test_redis_down_for_a_while_with_its_data_reruns_the_job(private_redis):
    client = private_redis.start()
    w = start_worker_process(private_redis.url, "w-down", worker_delta_interval_s=0)
    try:
        wait_ready(client, "w-down", w)
        job = submit(client, [{"role": "user", "content": "hello"}], {"max_new_tokens": 1900})
        wait_for(lambda: client.xlen(job.reply) >= 2)
        client.shutdown(save=True)  # an RDB file keeps the stream, the group and the pending entry
        private_redis.proc.wait(10)
        time.sleep(2.0)  # longer than redis-py's own retries
        client = private_redis.start()
        kinds = answered_once(events(client, job.reply, timeout=120))
        assert "restart" in kinds  # re-run from our pending list, and the reader was told
        wait_for(lambda: client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0)
        assert w.poll() is None
    finally:
        w.kill()


def test_redis_restart_without_data_worker_recreates_its_group(private_redis):
    client = private_redis.start()
    w = start_worker_process(private_redis.url, "w-restart")
    try:
        wait_ready(client, "w-restart", w)
        private_redis.stop()
        time.sleep(1.0)
        client = private_redis.start()  # empty: no stream, no group, no heartbeat
        wait_ready(client, "w-restart", w, timeout=60)  # the worker noticed and came back
        job = submit(client, [{"role": "user", "content": "still there?"}], {"max_new_tokens": 5})
        assert events(client, job.reply, timeout=60)[-1]["event"] == "done"
        assert client.xinfo_groups(protocol.JOBS_STREAM)[0]["name"] == protocol.GROUP.encode()
    finally:
        w.kill()

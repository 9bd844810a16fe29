"""Shared fixtures. Redis is the real server on 127.0.0.1:6379 (`make test` starts it).

Each test that touches Redis gets a database of its own (1..15), taken with a lock key in database 0, so
test runs in parallel processes never see each other's streams.
"""

from __future__ import annotations

import os
import time

import pytest
import redis

REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
_LOCK = "omnifusion-test:db-lock:{}"


def acquire_db(timeout_s: float = 120.0) -> int:
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    try:
        admin.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT}; `make redis` starts it")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for db in range(1, 16):
            if admin.set(_LOCK.format(db), os.getpid(), nx=True, ex=900):
                redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
                return db
        time.sleep(0.2)
    pytest.fail("no free Redis test database within 120 s")


def release_db(db: int) -> None:
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0).delete(_LOCK.format(db))


@pytest.fixture
def redis_url():
    """URL of an empty Redis database that belongs to this test alone."""
    db = acquire_db()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        release_db(db)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)

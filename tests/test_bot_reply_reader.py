"""The one reader of every reply stream treats each entry as untrusted: a malformed event, or a reply key that
is not a stream, fails only its own answer (its user is told), and a failure of the reader itself is
survived (the task is supervised). The test plays the worker by writing reply streams directly."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from redis.asyncio import Redis

from bot.services.replies import ReplyReader
from bot.services.stopping import cancel_and_wait
from model import protocol

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness

GARBLED = "⚠️ The model's answer arrived garbled."


async def two_answers_in_flight(harness, telegram) -> tuple[int, str, int, str]:
    victim = await telegram.create_user(language_code="en")
    other = await telegram.create_user(language_code="en")
    await telegram.send_text(victim.id, "first question")
    await telegram.send_text(other.id, "second question")
    await harness.pump()
    victim_job = (await harness.access.inflight(victim.id))["job_id"]
    other_job = (await harness.access.inflight(other.id))["job_id"]
    return victim.id, victim_job, other.id, other_job


def last_text(telegram, chat_id: int) -> str:
    messages = telegram.bot_messages(chat_id)
    return messages[-1].text if messages else ""


@pytest.mark.parametrize("poison", ["invalid utf-8", "tokens not a number", "key not a stream"])
async def test_a_bad_reply_fails_only_its_own_answer(harness, telegram, redis_url, poison):
    redis = Redis.from_url(redis_url)
    victim, victim_job, other, other_job = await two_answers_in_flight(harness, telegram)
    victim_reply = protocol.reply_key(victim_job)
    if poison == "invalid utf-8":
        await redis.xadd(victim_reply, {"event": "delta", "text": b"\xff\xfe not text"})
    elif poison == "tokens not a number":
        await redis.xadd(victim_reply, {"event": "done", "text": "x", "finish": "stop", "tokens": "abc"})
    else:
        await redis.set(victim_reply, "a string where a stream belongs")
    await asyncio.sleep(1.0)  # the reader has met the bad entry by now (and, before the fix, died of it)
    await redis.xadd(protocol.reply_key(other_job), protocol.delta_event("Fine "))
    await redis.xadd(protocol.reply_key(other_job), protocol.done_event("Fine answer.", "stop", 2))

    await telegram.wait_for(lambda: last_text(telegram, other) == "Fine answer.", 5, "the other answer")
    await telegram.wait_for(lambda: last_text(telegram, victim).startswith(GARBLED), 5, "the victim told")
    await harness.finish_answers(within_s=10)
    assert await harness.access.inflight(victim) is None  # free to ask again
    assert harness.metrics.replies.labels(outcome="error:bad_reply")._value.get() == 1
    await redis.aclose()


async def test_the_reader_restarts_after_a_failure_of_its_own(harness, telegram, redis_url, monkeypatch):
    redis = Redis.from_url(redis_url)
    reader: ReplyReader = harness.delivery.replies
    monkeypatch.setattr(ReplyReader, "RESTART_PAUSE_S", 0.1)
    real_xread, failures = reader.redis.xread, []

    async def xread_failing_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug in the loop")
        return await real_xread(*args, **kwargs)

    monkeypatch.setattr(reader.redis, "xread", xread_failing_once)
    user = await telegram.create_user(language_code="en")
    await telegram.send_text(user.id, "hello")
    await harness.pump()
    job_id = (await harness.access.inflight(user.id))["job_id"]
    await redis.xadd(protocol.reply_key(job_id), protocol.done_event("Still here.", "stop", 2))
    await telegram.wait_for(lambda: last_text(telegram, user.id) == "Still here.", 5, "the answer")
    assert failures and harness.metrics.errors.labels(where="reply_reader")._value.get() == 1
    await redis.aclose()


async def test_shutdown_ends_tasks_that_loop_over_redis_calls(redis_url):
    """On Python 3.11 one cancel() of a task in a Redis call is lost now and then (redis-py sends through
    asyncio.wait_for; see bot/services/stopping.py): a shutdown then waited forever. Many short reads and
    cancels at random moments; each must end within seconds."""
    redis = Redis.from_url(redis_url)

    async def read_forever() -> None:
        while True:
            await redis.xread({"nothing": "$"}, block=1)

    reader = ReplyReader(redis, metrics=None)
    reader.BLOCK_MS = 1  # most of the reader's time in Redis calls, where a cancel can be lost
    rng = random.Random(0)
    for _ in range(30):
        task = asyncio.create_task(read_forever())
        reader.subscribe("nothing")
        await asyncio.sleep(rng.uniform(0.0, 0.01))
        started = time.monotonic()
        async with asyncio.timeout(10):  # a close that swallows cancels may swallow this one too: timed as well
            await cancel_and_wait([task])
            await reader.close()
        assert time.monotonic() - started < 2.0
        assert task.cancelled() and reader._task is None
    await redis.aclose()

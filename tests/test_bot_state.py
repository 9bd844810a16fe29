"""The bot's state in Redis: dialogs (trimming, TTL, persistence, /new), images, rate limits and bans
(atomic under concurrency), the in-flight record, and the queue's view of itself."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot import keys
from bot.services.access import AccessControl
from bot.services.dialogs import DialogStore
from bot.services.jobs import JobSubmitter
from model import protocol


def user_turn(text: str, image_key: str | None = None) -> dict:
    content = [{"type": "image", "key": image_key}] if image_key else []
    return {"role": "user", "content": [*content, {"type": "text", "text": text}]}


async def test_dialog_is_trimmed_to_whole_exchanges_and_expires(redis_url):
    redis = Redis.from_url(redis_url)
    dialogs = DialogStore(redis, max_turns=3, ttl_s=100, image_ttl_s=200)
    session = await dialogs.session(1, 2)
    for i in range(5):
        assert await dialogs.append_exchange(1, 2, session, user_turn(f"q{i}"), f"a{i}")
    messages = await dialogs.messages(1, 2)
    assert [m["content"][-1]["text"] for m in messages] == ["q2", "a2", "q3", "a3", "q4", "a4"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert 90 < await redis.ttl(keys.dialog(1, 2)) <= 100
    assert 90 < await redis.ttl(keys.dialog_session(1, 2)) <= 100
    await redis.aclose()


async def test_dialog_survives_a_new_connection_and_is_per_chat_and_user(redis_url):
    first = DialogStore(Redis.from_url(redis_url), 10, 100, 200)
    await first.append_exchange(1, 2, await first.session(1, 2), user_turn("mine"), "ok")
    await first.redis.aclose()
    second = DialogStore(Redis.from_url(redis_url), 10, 100, 200)  # a restarted bot
    assert (await second.messages(1, 2))[0]["content"][-1]["text"] == "mine"
    assert await second.messages(1, 3) == [] and await second.messages(4, 2) == []
    await second.redis.aclose()


async def test_answer_arriving_after_new_is_not_appended(redis_url):
    dialogs = DialogStore(Redis.from_url(redis_url), 10, 100, 200)
    old_session = await dialogs.session(1, 2)
    await dialogs.reset(1, 2)
    assert not await dialogs.append_exchange(1, 2, old_session, user_turn("old"), "late answer")
    assert await dialogs.messages(1, 2) == []
    assert await dialogs.append_exchange(1, 2, await dialogs.session(1, 2), user_turn("new"), "fresh")
    await dialogs.redis.aclose()


async def test_images_are_stored_once_and_kept_alive_while_referred_to(redis_url):
    redis = Redis.from_url(redis_url)
    dialogs = DialogStore(redis, 10, 100, 500)
    key = await dialogs.store_image(b"picture bytes", sender=7)
    assert key == protocol.image_key_for(b"picture bytes")
    await redis.expire(key, 5)
    assert await dialogs.store_image(b"picture bytes", sender=8) == key  # sent again: TTL refreshed, not rewritten
    assert await redis.ttl(key) > 400
    # who sent it is kept, for /forget: a picture two people sent stays until both forgot
    assert await redis.smembers(keys.picture_senders(key)) == {b"7", b"8"}
    assert await redis.smembers(keys.pictures_of(7)) == {key.encode()}
    await redis.expire(key, 5)
    gone = await dialogs.keep_images_alive(
        [user_turn("q", key), user_turn("q2", protocol.image_key("0" * 64))]
    )
    assert gone == [protocol.image_key("0" * 64)] and await redis.ttl(key) > 400
    await redis.aclose()


def record(job_id: str, user_id: int = 7) -> dict:
    return {"job_id": job_id, "user_id": user_id, "chat_id": user_id}


async def test_rate_limit_cannot_be_overshot_by_concurrent_turns(redis_url):
    clients = [Redis.from_url(redis_url) for _ in range(8)]  # separate connections, truly concurrent
    controls = [AccessControl(c, (5, 3600), frozenset()) for c in clients]
    admitted: list[str] = []

    async def keep_trying(control: AccessControl, n: int) -> None:
        for attempt in range(200):
            job_id = f"{n}-{attempt}"
            verdict = await control.admit(7, record(job_id), 60)
            if verdict.verdict == "limited":
                return
            if verdict.ok:
                admitted.append(job_id)
                await control.release(7, job_id)

    await asyncio.gather(*(keep_trying(controls[n % 8], n) for n in range(40)))
    assert len(admitted) == 5
    verdict = await controls[0].admit(7, record("late"), 60)
    assert verdict.verdict == "limited" and verdict.limit == (5, 3600) and 3590 < verdict.retry_in_s <= 3600
    for c in clients:
        await c.aclose()


async def test_only_one_turn_in_flight_even_at_the_same_instant(redis_url):
    clients = [Redis.from_url(redis_url) for _ in range(10)]
    verdicts = await asyncio.gather(
        *(
            AccessControl(c, (100, 60), frozenset()).admit(7, record(f"j{i}"), 60)
            for i, c in enumerate(clients)
        )
    )
    assert sorted(v.verdict for v in verdicts) == ["busy"] * 9 + ["ok"]
    for c in clients:
        await c.aclose()


async def test_sliding_window_frees_a_slot_when_the_oldest_turn_leaves(redis_url):
    redis = Redis.from_url(redis_url)
    access = AccessControl(redis, (2, 60), frozenset())
    now_ms = time.time() * 1000
    await redis.zadd(keys.rate_log(7), {"old": now_ms - 59_000, "newer": now_ms - 1_000})
    verdict = await access.admit(7, record("x"), 60)
    assert verdict.verdict == "limited" and 0 < verdict.retry_in_s <= 1.5  # "old" leaves in about a second
    await redis.zadd(keys.rate_log(7), {"old": now_ms - 61_000})
    assert (await access.admit(7, record("y"), 60)).ok
    await redis.aclose()


async def test_limits_by_user_all_and_default_and_admin_exemption(redis_url):
    redis = Redis.from_url(redis_url)
    access = AccessControl(redis, (1, 60), frozenset({99}))
    await access.set_limit(None, "2/hour")
    await access.set_limit(8, "3/day")
    assert await access.effective_limit(7) == ((2, 3600), "all")
    assert await access.effective_limit(8) == ((3, 86400), "user")
    for i in range(5):  # admins are not rate limited
        assert (await access.admit(99, record(f"a{i}", 99), 60)).ok
        await access.release(99, f"a{i}")
    await access.ban(7)
    assert (await access.admit(7, record("b"), 60)).verdict == "banned"
    assert await redis.zcard(keys.rate_log(7)) == 0  # a banned attempt is not counted
    await redis.aclose()


async def test_release_only_removes_its_own_record_and_refund_gives_the_turn_back(redis_url):
    redis = Redis.from_url(redis_url)
    access = AccessControl(redis, (1, 60), frozenset())
    assert (await access.admit(7, record("mine"), 60)).ok
    await access.release(7, "someone-else")
    assert (await access.inflight(7))["job_id"] == "mine"
    await access.release(7, "mine")
    assert (await access.admit(7, record("second"), 60)).verdict == "limited"
    await access.refund(7, "mine")
    assert (await access.admit(7, record("third"), 60)).ok
    await redis.aclose()


async def test_queue_position_counts_undelivered_jobs_ahead(redis_url):
    redis = Redis.from_url(redis_url)
    queue = JobSubmitter(redis)
    queue.CACHE_S = 0  # look at Redis every time (the bot caches for a second)
    entries = [await queue.submit(protocol.new_job([user_turn(f"q{i}")]), owner=7) for i in range(4)]
    assert [await queue.ahead_of(e) for e in entries] == [0, 1, 2, 3]  # no worker group yet: all wait
    await redis.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0")
    await redis.xreadgroup(protocol.GROUP, "w1", {protocol.JOBS_STREAM: ">"}, count=2)  # a worker takes 2
    assert [await queue.ahead_of(e) for e in entries] == [None, None, 0, 1]
    await queue.withdraw(entries[2])
    assert await queue.ahead_of(entries[3]) == 0
    state = await queue.state()
    assert (state.waiting, state.running, state.workers) == (1, 2, 0)
    await redis.set(protocol.heartbeat_key("w1"), "{}", ex=10)
    assert await queue.workers_alive() == 1
    await redis.aclose()

"""Who may ask what, when: bans, rate limits and the one-answer-in-flight rule, all in Redis.

`admit` is one Lua script, so the checks and the bookkeeping happen atomically: two messages sent at the
same moment cannot both slip under a limit, and cannot both start an answer.

Rate limits are a sliding window (a ZSET of admitted turn times): "20/hour" means at most 20 turns in any
60 minutes, and the refusal can say exactly when the oldest one leaves the window.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bot import keys
from bot.settings import parse_limit

_ADMIT = """
-- KEYS: banned set, in-flight record, rate log, user limit, global limit, busy notice, limited notice, ban
--       notice, waiting turn
-- ARGV: user id, now (ms), turn id, in-flight JSON, in-flight TTL (s), default N, default window (s), exempt,
--       the turn to keep for later if an answer is being written ('' = none)
-- Returns {verdict, tell, ...}: tell = 1 when the user is to be told (once per answer in flight, once per
-- rate-limit window, once an hour when banned), so a flood of messages earns one notice, not a flood.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return {'banned', redis.call('SET', KEYS[8], 1, 'EX', 3600, 'NX') and 1 or 0}
end
local current = redis.call('GET', KEYS[2])
if current then
  local ok, record = pcall(cjson.decode, current)
  local job = (ok and type(record) == 'table' and record['job_id']) or current
  if ARGV[9] ~= '' and redis.call('SET', KEYS[9], ARGV[9], 'EX', ARGV[5], 'NX') then return {'queued', 1} end
  if redis.call('GET', KEYS[6]) == job then return {'busy', 0} end
  redis.call('SET', KEYS[6], job, 'EX', ARGV[5])
  return {'busy', 1}
end
if ARGV[8] == '0' then
  local n, window = tonumber(ARGV[6]), tonumber(ARGV[7])
  local spec = redis.call('GET', KEYS[4]) or redis.call('GET', KEYS[5])
  if spec then
    local a, b = string.match(spec, '^(%d+)/(%d+)$')
    if a then n, window = tonumber(a), tonumber(b) end
  end
  local now, span = tonumber(ARGV[2]), tonumber(window) * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - span)
  local used = redis.call('ZCARD', KEYS[3])
  if used >= n then
    -- free again when enough of the oldest turns have left the window
    local oldest = redis.call('ZRANGE', KEYS[3], used - n, used - n, 'WITHSCORES')
    local wait = math.max(1, math.ceil(tonumber(oldest[2]) + span - now))
    local tell = redis.call('SET', KEYS[7], 1, 'PX', wait, 'NX') and 1 or 0
    return {'limited', tell, wait, n, window}
  end
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], span)
end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
return {'ok', 1}
"""

# Delete the in-flight record only if it is still ours (a /cancel + new turn may have replaced it).
_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['job_id'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_UPDATE = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['job_id'] == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return nil
"""


@dataclass
class Admission:
    verdict: str  # ok | queued (kept as the next turn) | banned | busy | limited
    tell: bool = True  # False: this user was told already (this answer, this window, this hour)
    retry_in_s: float = 0.0
    limit: tuple[int, int] | None = None  # (N, window seconds) that refused the turn

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


class AccessControl:
    def __init__(self, redis: Redis, default_limit: tuple[int, int], admin_ids: frozenset[int]):
        self.redis = redis
        self.default_limit = default_limit
        self.admin_ids = admin_ids
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)
        self._update = redis.register_script(_UPDATE)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids

    async def admit(
        self, user_id: int, record: dict[str, Any], ttl_s: int, later: dict[str, Any] | None = None
    ) -> Admission:
        """Check ban, one-in-flight and rate limit; when all pass, count the turn and store `record` (which
        must carry `job_id`) as the user's in-flight answer. Admins are not rate limited. While an answer is
        being written, `later` (the turn itself, as JSON-able data) is kept as the user's next turn if none
        is kept yet: verdict `queued`."""
        n, window = self.default_limit
        verdict, tell, *rest = await self._admit(
            keys=[
                keys.BANNED,
                keys.inflight(user_id),
                keys.rate_log(user_id),
                keys.limit(user_id),
                keys.LIMIT_ALL,
                keys.notice(user_id, "busy"),
                keys.notice(user_id, "limited"),
                keys.ban_notice(user_id),
                keys.waiting_turn(user_id),
            ],
            args=[
                user_id,
                int(time.time() * 1000),
                record["job_id"],
                json.dumps(record, ensure_ascii=False),
                ttl_s,
                n,
                window,
                int(self.is_admin(user_id)),
                json.dumps(later, ensure_ascii=False) if later else "",
            ],
        )
        verdict, tell = verdict.decode(), bool(tell)
        if verdict == "limited":
            return Admission(verdict, tell, retry_in_s=int(rest[0]) / 1000, limit=(int(rest[1]), int(rest[2])))
        return Admission(verdict, tell)

    async def refund(self, user_id: int, job_id: str) -> None:
        """A turn that never reached the queue (bad image, download failed) does not count."""
        await self.redis.zrem(keys.rate_log(user_id), job_id)

    # --- the in-flight record -----------------------------------------------------------------------------

    async def inflight(self, user_id: int) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.inflight(user_id))
        return json.loads(raw) if raw else None

    async def update_inflight(self, record: dict[str, Any]) -> bool:
        payload = json.dumps(record, ensure_ascii=False)
        return bool(
            await self._update(keys=[keys.inflight(record["user_id"])], args=[record["job_id"], payload])
        )

    async def release(self, user_id: int, job_id: str) -> None:
        await self._release(keys=[keys.inflight(user_id)], args=[job_id])

    async def take_waiting(self, user_id: int) -> dict[str, Any] | None:
        """The turn kept while the last answer was written (removed: it is taken once)."""
        raw = await self.redis.getdel(keys.waiting_turn(user_id))
        return json.loads(raw) if raw else None

    async def drop_waiting(self, user_id: int) -> bool:
        return bool(await self.redis.delete(keys.waiting_turn(user_id)))

    async def all_inflight(self) -> list[dict[str, Any]]:
        records = []
        async for key in self.redis.scan_iter(match=keys.INFLIGHT_PATTERN, count=200):
            raw = await self.redis.get(key)
            if raw:
                records.append(json.loads(raw))
        return records

    # --- limits and bans (admin commands) -----------------------------------------------------------------

    async def set_limit(self, user_id: int | None, spec: str | None) -> None:
        """Set '20/hour' for a user (None = everyone's default); spec None removes the override."""
        key = keys.LIMIT_ALL if user_id is None else keys.limit(user_id)
        if spec is None:
            await self.redis.delete(key)
        else:
            count, window = parse_limit(spec)
            await self.redis.set(key, f"{count}/{window}")

    async def effective_limit(self, user_id: int | None) -> tuple[tuple[int, int], str]:
        """((N, window), source) where source is 'user', 'all' or 'env'."""
        for key, source in (
            (keys.limit(user_id) if user_id is not None else None, "user"),
            (keys.LIMIT_ALL, "all"),
        ):
            if key and (raw := await self.redis.get(key)):
                count, window = raw.decode().split("/")
                return (int(count), int(window)), source
        return self.default_limit, "env"

    async def used(self, user_id: int, window_s: int) -> int:
        now_ms = time.time() * 1000
        return await self.redis.zcount(keys.rate_log(user_id), now_ms - window_s * 1000, "+inf")

    async def overrides(self) -> dict[int, tuple[int, int]]:
        found = {}
        async for key in self.redis.scan_iter(match=keys.limit("*"), count=200):
            suffix = key.decode().rsplit(":", 1)[1]
            if suffix.isdigit() and (raw := await self.redis.get(key)):
                count, window = raw.decode().split("/")
                found[int(suffix)] = (int(count), int(window))
        return found

    async def usage_today(self) -> dict[str, int]:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(keys.USERS)
            pipe.scard(keys.users_on(day))
            pipe.get(keys.turns_on(day))
            users, users_today, turns_today = await pipe.execute()
        return {"users": users, "users_today": users_today, "turns_today": int(turns_today or 0)}

    async def record_turn(self, user_id: int) -> None:
        """Counts for /stats: every user ever, users and turns per UTC day (kept three days)."""
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.USERS, user_id)
            pipe.incr(keys.turns_on(day))
            pipe.expire(keys.turns_on(day), 3 * 86400)
            pipe.sadd(keys.users_on(day), user_id)
            pipe.expire(keys.users_on(day), 3 * 86400)
            await pipe.execute()

    async def ban(self, user_id: int) -> None:
        await self.redis.sadd(keys.BANNED, user_id)

    async def unban(self, user_id: int) -> None:
        await self.redis.srem(keys.BANNED, user_id)

    async def is_banned(self, user_id: int) -> bool:
        return bool(await self.redis.sismember(keys.BANNED, user_id))

    async def should_tell_banned(self, user_id: int) -> bool:
        """Tell a banned user once an hour at most: a banned spammer must not make the bot spam back."""
        return bool(await self.redis.set(keys.ban_notice(user_id), 1, ex=3600, nx=True))

"""Each user's /settings: answer length, creativity (sampling presets) and interface language, in Redis.

Only choices that differ from the defaults are stored, so a user who never opened /settings costs nothing
and follows the operator's MAX_NEW_TOKENS, TEMPERATURE and TOP_P.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot import keys
from bot.locales import TEXTS
from bot.settings import Settings

OPTIONS: dict[str, tuple[str, ...]] = {
    "length": ("short", "medium", "long"),
    "creativity": ("precise", "balanced", "creative"),
    "language": ("auto", *TEXTS),
}
DEFAULTS = {"length": "medium", "creativity": "balanced", "language": "auto"}

# Fractions of MAX_NEW_TOKENS (the worker caps it with WORKER_MAX_NEW_TOKENS).
LENGTH_SCALE = {"short": 0.25, "medium": 1.0, "long": 2.0}
# (temperature, top_p); "balanced" is the operator's TEMPERATURE and TOP_P.
SAMPLING = {"precise": (0.2, 0.8), "creative": (1.0, 0.95)}


class Preferences:
    def __init__(self, redis: Redis, settings: Settings):
        self.redis = redis
        self.settings = settings

    async def get(self, user_id: int) -> dict[str, str]:
        stored = await self.redis.hgetall(keys.preferences(user_id))
        choices = dict(DEFAULTS)
        for field, value in stored.items():
            field, value = field.decode(), value.decode()
            if value in OPTIONS.get(field, ()):  # a value from an older version is ignored, not trusted
                choices[field] = value
        return choices

    async def choose(self, user_id: int, field: str, value: str) -> bool:
        """False for a field or value that does not exist (a forged button)."""
        if value not in OPTIONS.get(field, ()):
            return False
        key = keys.preferences(user_id)
        if value == DEFAULTS[field]:
            await self.redis.hdel(key, field)
        else:
            await self.redis.hset(key, field, value)
        return True

    async def language(self, user_id: int) -> str | None:
        """The interface language the user chose, or None to follow Telegram's."""
        value = await self.redis.hget(keys.preferences(user_id), "language")
        value = value.decode() if value else None
        return value if value in TEXTS else None

    def generation_params(self, choices: dict[str, str]) -> dict[str, float | int]:
        params = dict(self.settings.generation_params)
        params["max_new_tokens"] = max(16, int(self.settings.max_new_tokens * LENGTH_SCALE[choices["length"]]))
        if choices["creativity"] in SAMPLING:
            params["temperature"], params["top_p"] = SAMPLING[choices["creativity"]]
        return params

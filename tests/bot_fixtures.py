"""Fixtures for the bot tests, loaded with `pytest_plugins = ["tests.bot_fixtures"]` (the shared conftest
stays the lead's): `telegram` (the local Bot API server), `harness` (the bot: private chats stream drafts), `edits_harness` (the
bot with STREAM_DRAFTS=false: every chat streams by editing a placeholder, as groups do and as drafts fall back
to), `scripted` (a scripted worker), `module_redis_url` (a Redis database a whole test module shares, for a real
worker that lives as long as the module)."""

from __future__ import annotations

import pytest

from local_bot_api import LocalBotAPI
from tests.bot_harness import BOT_USERNAME, BotUnderTest, ScriptedWorker
from tests.conftest import acquire_db, release_db


@pytest.fixture(scope="module")
def module_redis_url():
    db = acquire_db()
    yield f"redis://127.0.0.1:6379/{db}"
    release_db(db)


@pytest.fixture
async def telegram():
    async with LocalBotAPI(bot_username=BOT_USERNAME) as server:
        yield server


@pytest.fixture
async def harness(telegram, redis_url):
    bot = BotUnderTest(telegram, redis_url)
    yield bot
    await bot.stop()


@pytest.fixture
async def edits_harness(telegram, redis_url):
    bot = BotUnderTest(telegram, redis_url, stream_drafts=False)
    yield bot
    await bot.stop()


@pytest.fixture
async def scripted(redis_url):
    async with ScriptedWorker(redis_url) as worker:
        yield worker

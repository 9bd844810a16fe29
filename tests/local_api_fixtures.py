"""Fixtures for the local Bot API tests (load with `pytest_plugins`): a running server, a real aiogram
Bot pointed at it, and a user who has opened a private chat with the bot."""

from __future__ import annotations

import pytest

from local_bot_api import LocalBotAPI
from tests.local_api_helpers import BOT_USERNAME, make_bot


@pytest.fixture
async def server():
    async with LocalBotAPI(bot_username=BOT_USERNAME) as running:
        yield running


@pytest.fixture
async def bot(server):
    client = make_bot(server)
    yield client
    await client.session.close()


@pytest.fixture
async def user(server):
    person = await server.create_user(first_name="Ann", username="ann", language_code="en")
    await server.send_text(person.id, "/start")  # opens the private chat, as in Telegram
    return person

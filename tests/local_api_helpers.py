"""Helpers for the local Bot API tests: test images and a real aiogram Bot pointed at a server."""

from __future__ import annotations

import io

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from PIL import Image

from local_bot_api import LocalBotAPI

BOT_USERNAME = "omni_test_bot"


def png(width: int = 1000, height: int = 600, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_bot(server: LocalBotAPI, token: str | None = None) -> Bot:
    api = TelegramAPIServer.from_base(server.base_url)
    return Bot(token or server.bot().token, session=AiohttpSession(api=api))

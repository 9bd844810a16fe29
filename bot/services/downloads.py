"""Files users send: downloaded by the bot itself (their URLs contain the token and never leave the bot),
within the size limit, with Telegram's flood control and 5xx waited out. And `TurnProblem`, what a turn
that cannot go ahead tells its user."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from bot.observability import BotMetrics
from bot.services.outbox import Outbox

log = logging.getLogger(__name__)


class TurnProblem(Exception):
    """Something to tell the user instead of answering: an i18n key and its fields."""

    def __init__(self, key: str, **fields: Any):
        super().__init__(key)
        self.key = key
        self.fields = fields


def too_large(size: int | None, max_bytes: int) -> TurnProblem:
    return TurnProblem("file_too_large", size=f"{(size or 0) / 2**20:.1f}", max_mb=max_bytes // 2**20)


class Downloader:
    def __init__(self, bot: Bot, outbox: Outbox, metrics: BotMetrics, max_bytes: int):
        self.bot = bot
        self.outbox = outbox
        self.metrics = metrics
        self.max_bytes = max_bytes

    async def download(self, chat_id: int, file_id: str) -> bytes:
        try:
            # flood control or a 5xx on getFile is waited out, like a send: not the user's problem
            file = await self.outbox.request(chat_id, lambda: self.bot.get_file(file_id))
            if (file.file_size or 0) > self.max_bytes:
                raise too_large(file.file_size, self.max_bytes)
            buffer = await self.bot.download_file(file.file_path, timeout=60)
            return buffer.getvalue()
        except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not download a file: %s", exc)
            self.metrics.errors.labels(where="download").inc()
            raise TurnProblem("download_failed") from exc

"""Webhook mode: an aiohttp server that takes Telegram's POSTs, checks their secret header, and feeds them to
the dispatcher. Behind a TLS reverse proxy (Telegram posts only to ports 443, 80, 88 and 8443)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.settings import Settings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class CheckedWebhookHandler(SimpleRequestHandler):
    """aiogram's handler, answering what only a stranger sends with 401 and 400 instead of a 500: a secret
    header with non-ASCII characters (`compare_digest` refuses non-ASCII strings with a TypeError) and a
    body that is not an update (bad JSON fails inside aiogram, a wrong shape in a background task)."""

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if not self.secret_token:
            return True
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: encode the same way, compare bytes
        given = telegram_secret_token.encode("utf-8", "surrogateescape")
        return secrets.compare_digest(given, self.secret_token.encode())

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            return web.Response(status=401, text="Unauthorized")
        try:
            Update.model_validate(await request.json(), context={"bot": self.bot})
        except ValueError:  # JSONDecodeError, UnicodeDecodeError and pydantic's ValidationError all are
            return web.Response(status=400, text="Bad Request: the body is not a Telegram update")
        return await super().handle(request)  # the body is cached: aiogram reads it again for free


def webhook_app(settings: Settings, bot: Bot, dp: Dispatcher, secret: str) -> web.Application:
    """aiohttp app that takes Telegram's POSTs at WEBHOOK_PATH and runs the dispatcher's startup/shutdown
    with its own."""
    app = web.Application()
    CheckedWebhookHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=settings.webhook_path)
    setup_application(app, dp, bot=bot)
    return app


async def run_webhook(settings: Settings, bot: Bot, dp: Dispatcher) -> None:
    secret = (
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    )
    runner = web.AppRunner(webhook_app(settings, bot, dp, secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.webhook_host, settings.webhook_port).start()
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=secret,
        allowed_updates=dp.resolve_used_update_types(),
        drop_pending_updates=False,
    )
    log.info(
        "webhook listening on %s:%d%s", settings.webhook_host, settings.webhook_port, settings.webhook_path
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # The webhook stays set: Telegram keeps updates while we are down and delivers them to the next start.
    await runner.cleanup()  # runs the dispatcher's shutdown (answers in flight are resumed next time)

"""`python -m bot`: long polling, or a webhook server when WEBHOOK_URL is set. SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.app import create_bot, create_dispatcher, create_redis
from bot.observability import setup_logging
from bot.settings import Settings

log = logging.getLogger("bot")


def webhook_app(settings: Settings, bot: Bot, dp: Dispatcher, secret: str) -> web.Application:
    """aiohttp app that takes Telegram's POSTs (checking X-Telegram-Bot-Api-Secret-Token) and runs the
    dispatcher's startup/shutdown with its own."""
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(
        app, path=settings.webhook_path
    )
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
    await bot.session.close()


async def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format, settings.bot_token.get_secret_value())
    bot = create_bot(settings)
    dp = create_dispatcher(settings, bot, create_redis(settings))
    if settings.webhook_url:
        await run_webhook(settings, bot, dp)
    else:
        await bot.delete_webhook(drop_pending_updates=False)
        await dp.start_polling(bot, handle_signals=True)  # SIGTERM/SIGINT end polling, then shutdown hooks


if __name__ == "__main__":
    asyncio.run(main())

"""`python -m bot`: long polling, or a webhook server when WEBHOOK_URL is set. SIGTERM stops it cleanly.

A failure to start ends the process with exit status 1 (2 for bad settings) and a short message, always
through the logging setup that scrubs the token: Bot API error bodies can echo the request path, which holds
the token, and an uncaught traceback would print it as is.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.observability import setup_logging
from bot.settings import Settings, describe_settings_error

log = logging.getLogger("bot")


async def main(settings: Settings) -> None:
    # Imported once the settings are known to be good: aiogram takes seconds to import (more on a busy
    # machine), and a typo in .env should be reported at once.
    from bot.app import create_bot, create_dispatcher, create_redis
    from bot.webhook import run_webhook

    bot = create_bot(settings)
    dp = create_dispatcher(settings, bot, create_redis(settings))
    try:
        if settings.webhook_url:
            await run_webhook(settings, bot, dp)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            await dp.start_polling(bot, handle_signals=True)  # SIGTERM/SIGINT end polling, then shutdown hooks
    finally:
        await bot.session.close()  # a failed start leaves no unclosed session behind


def run() -> int:
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:  # before logging exists: the description is redacted
        print(describe_settings_error(exc), file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings.bot_token.get_secret_value())
    try:
        asyncio.run(main(settings))
    except KeyboardInterrupt:  # Ctrl-C before polling took over the signals
        return 130
    except Exception as exc:
        log.critical("the bot stopped: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())

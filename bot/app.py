"""Building the bot: Bot (pointed at any Bot API server), Dispatcher, services, routers, lifecycle.

`__main__` and the tests build the bot the same way, through these two functions.
"""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import ErrorEvent
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.handlers import admin, buttons, chat, commands, feedback, forget
from bot.handlers import settings as settings_router
from bot.i18n import Translator, pick_language
from bot.menus import set_admin_menu, set_descriptions, set_user_menu
from bot.middlewares.albums import PasteMiddleware
from bot.middlewares.bans import BanMiddleware
from bot.middlewares.language import LanguageMiddleware
from bot.middlewares.observability import UpdateLogMiddleware
from bot.middlewares.requests import BestEffortChatActions
from bot.observability import BotMetrics, UserHasher, start_metrics_server
from bot.services.access import AccessControl
from bot.services.answers import AnswerRegistry
from bot.services.conversation import Conversation
from bot.services.delivery import AnswerDelivery
from bot.services.dialogs import DialogStore
from bot.services.documents import DocumentReader
from bot.services.downloads import Downloader
from bot.services.forget import UserEraser
from bot.services.jobs import JobSubmitter
from bot.services.outbox import Outbox
from bot.services.pictures import PictureFetcher
from bot.services.preferences import Preferences
from bot.services.replies import ReplyReader
from bot.services.turn_content import ContentCollector
from bot.services.turns import TurnService
from bot.settings import Settings

log = logging.getLogger(__name__)


def create_bot(settings: Settings) -> Bot:
    api = TelegramAPIServer.from_base(settings.telegram_api_url) if settings.telegram_api_url else None
    session = AiohttpSession(api=api) if api else AiohttpSession()
    session.middleware(BestEffortChatActions())
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def create_redis(settings: Settings) -> Redis:
    """A pool that makes callers wait for a free connection rather than fail: a burst of updates (each
    handler makes a few quick calls) must queue, not turn into "Too many connections" errors."""
    # After a Redis restart every pooled connection fails once ("Connection closed by server"): retry on a
    # fresh one instead of failing a burst of users' turns (29 of 30 concurrent calls failed without it).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=30,
        retry=Retry(ExponentialBackoff(cap=1.0), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis(connection_pool=pool)


class Lifecycle:
    """What runs beside the handlers: menus and resumed answers on start, the metrics endpoint; and the
    order things stop in."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        delivery: AnswerDelivery,
        replies: ReplyReader,
        metrics: BotMetrics,
    ):
        self.settings = settings
        self.redis = redis
        self.delivery = delivery
        self.replies = replies
        self.metrics = metrics
        self._metrics_runner: web.AppRunner | None = None

    async def startup(self, bot: Bot) -> None:
        me = await bot.me()
        log.info("bot @%s starting", me.username)
        await set_user_menu(bot)
        await set_descriptions(bot)
        for admin_id in self.settings.admin_ids:
            await set_admin_menu(bot, admin_id)
        if self.settings.metrics_port:
            self._metrics_runner = await start_metrics_server(
                self.metrics, self.settings.metrics_host, self.settings.metrics_port
            )
        await self.delivery.resume()

    async def shutdown(self) -> None:
        await self.delivery.close()  # answers in flight stay in Redis and resume on the next start
        await self.replies.close()
        if self._metrics_runner:
            await self._metrics_runner.cleanup()
        await self.redis.aclose()
        log.info("bot stopped")


def create_dispatcher(settings: Settings, bot: Bot, redis: Redis) -> Dispatcher:
    metrics = BotMetrics()
    hash_user = UserHasher(settings.bot_token.get_secret_value())
    outbox = Outbox(
        bot,
        metrics,
        settings.edit_interval_private_s,
        settings.edit_interval_group_s,
        settings.max_messages_per_second,
    )
    access = AccessControl(redis, settings.default_limit, settings.admin_ids)
    dialogs = DialogStore(redis, settings.dialog_max_turns, settings.dialog_ttl_s, settings.image_ttl_s)
    queue = JobSubmitter(redis)
    replies = ReplyReader(redis, metrics)
    answers = AnswerRegistry(redis, outbox, settings.dialog_ttl_s)
    preferences = Preferences(redis, settings)
    conversation = Conversation(access, queue, dialogs, answers)
    delivery = AnswerDelivery(
        bot, access, queue, dialogs, outbox, metrics, hash_user, replies, answers, settings.message_max_chars
    )
    downloader = Downloader(bot, outbox, metrics, settings.max_file_bytes)
    content = ContentCollector(
        bot, settings, queue, PictureFetcher(settings, dialogs, downloader), DocumentReader(settings, downloader)
    )
    turns = TurnService(
        bot, settings, access, dialogs, queue, delivery, outbox, metrics, hash_user, answers, preferences, content
    )
    eraser = UserEraser(redis, access, conversation, delivery)
    lifecycle = Lifecycle(settings, redis, delivery, replies, metrics)

    dp = Dispatcher(
        settings=settings,
        metrics=metrics,
        hash_user=hash_user,
        outbox=outbox,
        access=access,
        dialogs=dialogs,
        queue=queue,
        delivery=delivery,
        turns=turns,
        answers=answers,
        preferences=preferences,
        conversation=conversation,
        eraser=eraser,
        lifecycle=lifecycle,
    )
    paste = PasteMiddleware(settings.paste_wait_s, settings.paste_min_chars)
    dp.update.outer_middleware(paste.door)  # first: it sees the updates in the order they came
    dp.update.outer_middleware(UpdateLogMiddleware(metrics, hash_user))
    language = LanguageMiddleware(preferences)
    dp.message.outer_middleware(language)
    dp.callback_query.outer_middleware(language)
    dp.message.outer_middleware(BanMiddleware(access, outbox))
    dp.include_routers(
        admin.create_router(),
        commands.create_router(),
        settings_router.create_router(),
        forget.create_router(),
        buttons.create_router(),
        feedback.create_router(),
        chat.create_router(settings.album_wait_s, paste),
    )
    dp.startup.register(lifecycle.startup)
    dp.shutdown.register(lifecycle.shutdown)

    @dp.errors()
    async def on_error(event: ErrorEvent) -> bool:
        # A handler failed: log it (the token is scrubbed from logs), count it, tell the user in a word,
        # keep the bot running. Tracebacks never go to users.
        log.error("handler failed: %r", event.exception, exc_info=event.exception)
        metrics.errors.labels(where="handler").inc()
        if (query := event.update.callback_query) is not None:
            with contextlib.suppress(Exception):  # a press is answered even when its handler failed
                await query.answer(Translator(pick_language(query.from_user.language_code))("answer.failed"))
        message = event.update.message
        if message is not None and message.from_user is not None:
            t = Translator(pick_language(message.from_user.language_code))
            with contextlib.suppress(Exception):  # whatever broke may break this too
                await outbox.reply(message, t("answer.failed"))
        return True

    return dp

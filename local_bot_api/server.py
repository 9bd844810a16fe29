"""LocalBotAPI: the HTTP server aiogram talks to (`/bot<token>/<method>`, `/file/bot<token>/<path>`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .bot_methods import BOT_METHODS
from .control import Control
from .control_http import setup_control_routes
from .errors import NOT_FOUND, UNAUTHORIZED, ApiError, ControlError
from .events import EventHub
from .faults import FaultInjector, RateLimits
from .methods import MESSAGE_METHODS
from .observe import Observe
from .params import Params, read_request
from .state import BotAccount, Chat, FileStore, StoredMessage, User
from .updates import deliver_to_webhook

DEFAULT_TOKEN = "123456789:LOCAL-test-token_0123456789abcdefghi"
Handler = Callable[["LocalBotAPI", BotAccount, Params], Awaitable[Any]]
API_KEY = web.AppKey("local_bot_api", object)
_PAGE_DIR = Path(__file__).parent


@dataclass
class CallRecord:
    at: float  # time.monotonic()
    method: str
    chat_id: int | None
    status: int = 200  # HTTP status of the answer


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class LocalBotAPI(Control, Observe):
    """A Telegram Bot API–compatible server in memory, with a control API to act as users.

    `async with LocalBotAPI() as server:` binds 127.0.0.1 on a free port; `server.base_url` goes into
    TELEGRAM_API_URL / `TelegramAPIServer.from_base`.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str | None = None,
        bot_name: str = "OmniFusion",
        privacy_mode: bool = True,
        rate_limits: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.bots: dict[str, BotAccount] = {}
        self.users: dict[int, User] = {}
        self.files = FileStore()
        self.faults = FaultInjector()
        self.rate_limits = RateLimits(enabled=rate_limits)
        self.events = EventHub()
        self.calls: Counter[str] = Counter()
        self.call_log: deque[CallRecord] = deque(maxlen=200_000)
        self.primary_token = token
        self._user_ids = itertools.count(700_000_001)
        self._group_ids = itertools.count(1)
        self.add_bot(token, username=bot_username, first_name=bot_name, privacy_mode=privacy_mode)
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler) for name, handler in {**MESSAGE_METHODS, **BOT_METHODS}.items()
        }
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.app = self._build_app()

    # --- bots -----------------------------------------------------------------------------------------
    def add_bot(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str = "OmniFusion",
        privacy_mode: bool = True,
    ) -> BotAccount:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like 123456:ABC-def")
        bot = BotAccount(token, username or f"test{bot_id}_bot", first_name, privacy_mode)
        self.bots[token] = bot
        return bot

    def bot(self, token: str | None = None) -> BotAccount:
        """The bot with this token (default: the first one)."""
        found = self.bots.get(token or self.primary_token)
        if found is None:
            raise ControlError("no bot with that token")
        return found

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the server is not started")
        return self._http

    # --- lifecycle ------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> LocalBotAPI:
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        for bot in self.bots.values():
            bot.updates.closed = False
            await self.restart_webhook(bot)
        return self

    async def stop(self) -> None:
        for bot in self.bots.values():
            bot.updates.close()
        self.events.close()
        for task in self._webhook_tasks.values():
            task.cancel()
        for task in list(self._webhook_tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._webhook_tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> LocalBotAPI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def restart_webhook(self, bot: BotAccount) -> None:
        """(Re)starts pushing this bot's updates to its webhook; stops when the URL is empty."""
        task = self._webhook_tasks.pop(bot.token, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if bot.webhook.url and self._http is not None:
            self._webhook_tasks[bot.token] = asyncio.create_task(
                deliver_to_webhook(bot, self._http, self.call)
            )

    # --- methods --------------------------------------------------------------------------------------
    async def call(self, bot: BotAccount, method: str, params: Params) -> Any:
        """Runs one Bot API method as if requested over HTTP (counted, subject to faults)."""
        name, handler = self._methods.get(method.lower(), (method, None))
        record = CallRecord(time.monotonic(), name, _chat_id_of(params))
        self.calls[name] += 1
        self.call_log.append(record)
        try:
            if handler is None:
                raise ApiError(*NOT_FOUND)
            fault = self.faults.take(method.lower())
            if fault is not None:
                if fault.kind != "delay":
                    raise self.faults.error(fault)
                await asyncio.sleep(fault.delay)
            return await handler(self, bot, params)
        except ApiError as error:
            record.status = error.code
            raise

    def emit(
        self,
        bot: BotAccount,
        kind: str,
        chat: Chat | None,
        message: StoredMessage | None = None,
        **extra: Any,
    ) -> None:
        """Tells viewers (SSE) and waiters what changed."""
        event: dict[str, Any] = {
            "type": kind,
            "bot_id": bot.me.id,
            "chat_id": chat.id if chat else None,
            **extra,
        }
        if message is not None:
            event["message"] = message.to_json(history=False)
            if message.from_bot and chat is not None:
                chat.last_bot_activity = time.monotonic()
        self.events.publish(event)

    # --- HTTP -----------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)  # bots may upload 50 MB
        app[API_KEY] = self
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_get("/", self._handle_page)
        app.router.add_get("/playground", self._handle_page)
        app.router.add_get("/playground.js", self._handle_page_script)
        app.router.add_get("/favicon.ico", self._handle_no_content)
        setup_control_routes(app, self)
        return app

    async def _handle_api(self, request: web.Request) -> web.Response:
        bot = self.bots.get(request.match_info["token"])
        try:
            if bot is None:
                raise ApiError(*UNAUTHORIZED)
            params = await read_request(request)
            body: dict[str, Any] = {
                "ok": True,
                "result": await self.call(bot, request.match_info["method"], params),
            }
            status = 200
        except ApiError as error:
            body, status = error.payload(), error.code
        return web.json_response(body, status=status, dumps=_dumps)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] not in self.bots:
            return web.json_response(ApiError(*UNAUTHORIZED).payload(), status=401)
        record = self.files.by_path(request.match_info["path"])
        if record is None or record.data is None:
            return web.json_response(ApiError(*NOT_FOUND).payload(), status=404)
        return web.Response(body=record.data, content_type=record.mime_type or "application/octet-stream")

    async def _handle_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(_PAGE_DIR / "playground.html")

    async def _handle_no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _handle_page_script(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(_PAGE_DIR / "playground.js")


def _chat_id_of(params: Params) -> int | None:
    try:
        return int(params.raw("chat_id"))
    except (TypeError, ValueError):
        return None

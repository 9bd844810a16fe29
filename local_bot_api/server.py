"""LocalBotAPI: the HTTP server aiogram talks to (`/bot<token>/<method>`, `/file/bot<token>/<path>`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .bot_methods import BOT_METHODS, Handler
from .control import Control
from .control_http import setup_control_routes
from .control_media import MediaControl
from .errors import NOT_FOUND, UNAUTHORIZED, ApiError, ControlError
from .events import EventHub
from .faults import FaultInjector, RateLimits
from .files import FileStore
from .gestures import Gestures
from .interactive import INTERACTIVE_METHODS
from .methods import MESSAGE_METHODS
from .observe import Observe
from .params import Params, read_request
from .persist import StateFile
from .playground import Playground, PlaygroundControl, setup_page_routes
from .state import BotAccount, Chat, StoredMessage, User
from .updates import deliver_to_webhook

DEFAULT_TOKEN = "123456789:LOCAL-test-token_0123456789abcdefghi"
API_KEY = web.AppKey("local_bot_api", object)
log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    at: float  # time.monotonic()
    method: str
    chat_id: int | None
    status: int = 200  # HTTP status of the answer


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class LocalBotAPI(Control, MediaControl, Gestures, Observe, PlaygroundControl):
    """A Telegram Bot API–compatible server in memory, with a control API to act as users.

    `async with LocalBotAPI() as server:` binds 127.0.0.1 on a free port; `server.base_url` goes into
    TELEGRAM_API_URL / `TelegramAPIServer.from_base`. With `state_path` the state is restored at start
    and saved while it changes and at stop (persist.py).
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
        draft_lifetime: float = 30.0,
        callback_query_timeout: float = 15.0,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.draft_lifetime = draft_lifetime  # a draft not refreshed for this long disappears
        self.callback_query_timeout = callback_query_timeout  # answerCallbackQuery after this: "too old"
        self.state = StateFile(state_path) if state_path is not None else None
        self.playground = Playground()
        self.bots: dict[str, BotAccount] = {}
        self.users: dict[int, User] = {}
        self.files = FileStore()
        self.faults = FaultInjector()
        self.rate_limits = RateLimits(enabled=rate_limits)
        self.events = EventHub()
        self.calls: Counter[str] = Counter()
        self.call_log: deque[CallRecord] = deque(maxlen=200_000)
        self.primary_token = token
        self.next_ids = {"user": 700_000_001, "group": 1}
        self.add_bot(token, username=bot_username, first_name=bot_name, privacy_mode=privacy_mode)
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {**MESSAGE_METHODS, **INTERACTIVE_METHODS, **BOT_METHODS}.items()
        }
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self._autosave: asyncio.Task[None] | None = None
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
        if self.state is not None and self.state.load(self):
            log.info("restored %s", self.state.path)
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # SO_REUSEADDR: a quick restart gets its port back although the last run's connections linger
        # in TIME_WAIT (asyncio sets it by default on Unix; said here because restarts rely on it).
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        for bot in self.bots.values():
            bot.updates.closed = False
            await self.restart_webhook(bot)
        if self.state is not None:
            self.state.save(self)  # the port, at once: `make demo` reads it on the next start
            self._autosave = asyncio.create_task(self._save_while_changing(self.events.version))
        return self

    async def _save_while_changing(self, saved: int, every: float = 1.0) -> None:
        """Saves at most once per `every` seconds, and only after something changed (`saved`: the change
        count the last save included)."""
        while True:
            if self.events.version == saved:
                await self.events.wait_changed(3600.0)
                continue
            await asyncio.sleep(every)  # let a burst of edits (a streamed answer) settle into one save
            saved = self.events.version
            try:
                self.state.save(self)
            except OSError as error:  # a full disk must not stop the chat; the next change tries again
                log.warning("could not save %s: %s", self.state.path, error)

    async def stop(self) -> None:
        if self._autosave is not None:
            self._autosave.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._autosave
            self._autosave = None
            self.state.save(self)
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
            if message.from_bot and chat is not None and kind in ("message", "edit", "delete"):
                chat.last_bot_activity = time.monotonic()
        self.events.publish(event)

    # --- HTTP -----------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)  # bots may upload 50 MB
        app[API_KEY] = self
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        setup_page_routes(app, self)
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


def _chat_id_of(params: Params) -> int | None:
    try:
        return int(params.raw("chat_id"))
    except (TypeError, ValueError):
        return None

"""A local Telegram Bot API–compatible server for end-to-end tests and the web playground.

async with LocalBotAPI() as server:
    bot = Bot(server.bot().token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
    user = await server.create_user(first_name="Ann")
    await server.send_text(user.id, "/start")
"""

from .errors import ApiError, ControlError
from .server import DEFAULT_TOKEN, CallRecord, LocalBotAPI
from .state import BotAccount, Chat, StoredMessage, User

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "BotAccount",
    "CallRecord",
    "Chat",
    "ControlError",
    "LocalBotAPI",
    "StoredMessage",
    "User",
]

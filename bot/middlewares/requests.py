"""Session (outgoing request) middleware: a failed "typing…" must never break anything.

aiogram's ChatActionSender runs sendChatAction in a background task and does not catch its errors, so one
429 or 5xx would end that task with an exception nobody retrieves. A chat action is decoration: swallow."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramAPIError
from aiogram.methods import Response, SendChatAction, TelegramMethod

log = logging.getLogger(__name__)


class BestEffortChatActions(BaseRequestMiddleware):
    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        if not isinstance(method, SendChatAction):
            return await make_request(bot, method)
        try:
            return await make_request(bot, method)
        except TelegramAPIError as exc:
            log.debug("chat action failed (ignored): %s", exc.message)
            return Response[bool](ok=True, result=True)

"""Turns: photos, pictures and documents sent as files, albums, text (a long paste Telegram split into
several messages is one). Everything else gets a short clear reply.

In groups this router only sees messages addressed to the bot (a mention or a reply to it)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.filters import AddressedToBot
from bot.i18n import Translator
from bot.middlewares.albums import AlbumMiddleware, PasteMiddleware
from bot.services.outbox import Outbox
from bot.services.turns import TurnService

_UNSUPPORTED = (
    (F.sticker, "unsupported.sticker"),
    (F.voice | F.audio | F.video_note, "unsupported.voice"),
    (F.video | F.animation, "unsupported.video"),
)


def create_router(album_wait_s: float, paste: PasteMiddleware) -> Router:
    """`paste`'s door must also be the dispatcher's first outer middleware on updates (bot/app.py)."""
    router = Router(name="chat")
    router.message.outer_middleware(AlbumMiddleware(album_wait_s))
    router.message.outer_middleware(paste)
    router.message.filter(AddressedToBot())

    @router.message(F.text.startswith("/"))
    async def unknown_command(message: Message, outbox: Outbox, t: Translator) -> None:
        await outbox.reply(message, t("unknown_command"))

    @router.message(F.photo | F.document | F.text | F.media_group_id)
    async def turn(
        message: Message, turns: TurnService, t: Translator, album: list[Message] | None = None
    ) -> None:
        await turns.ask(album or [message], t)

    for content, key in _UNSUPPORTED:

        def make(text_key: str):  # bind the key now, not at call time
            async def unsupported(message: Message, outbox: Outbox, t: Translator) -> None:
                await outbox.reply(message, t(text_key))

            return unsupported

        router.message.register(make(key), content)

    @router.message()
    async def anything_else(message: Message, outbox: Outbox, t: Translator) -> None:
        await outbox.reply(message, t("unsupported.other"))

    return router

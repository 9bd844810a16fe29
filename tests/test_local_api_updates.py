"""Getting updates from the local Bot API: long polling, webhooks (with aiogram's own dispatcher and
webhook handler), albums, and shutting down cleanly while a webhook is set."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiogram.exceptions import TelegramConflictError
from aiohttp import web
from PIL import Image

from local_bot_api.updates import UpdateQueue
from tests.local_api_helpers import png

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user


async def test_long_polling_delivers_photo_and_download_returns_bytes(server, bot):
    ann = await server.create_user(first_name="Ann")
    original = png()

    async def send_later():
        await asyncio.sleep(0.3)
        await server.send_photo(ann.id, original, caption="What is this?")

    sender = asyncio.create_task(send_later())
    updates = await bot.get_updates(timeout=5)  # waits: nothing is pending when it starts
    await sender
    assert len(updates) == 1
    message = updates[0].message
    assert message.caption == "What is this?" and message.from_user.id == ann.id
    sizes = [(p.width, p.height) for p in message.photo]
    assert sizes == [(90, 54), (320, 192), (800, 480), (1000, 600)]
    assert len({p.file_id for p in message.photo}) == 4
    downloaded = await bot.download(message.photo[-1].file_id)
    assert downloaded.getvalue() == original
    thumbnail = Image.open(await bot.download(message.photo[0].file_id))
    assert thumbnail.size == (90, 54)
    # confirmed by offset: not delivered again
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []


async def test_album_updates_share_media_group(server, bot):
    ann = await server.create_user(first_name="Ann")
    await server.send_album(
        ann.id, [png(colour="red"), png(colour="blue"), png(colour="green")], caption="compare"
    )
    updates = await bot.get_updates()
    groups = {u.message.media_group_id for u in updates}
    assert len(updates) == 3 and len(groups) == 1 and None not in groups
    assert [u.message.caption for u in updates] == ["compare", None, None]


async def test_second_poller_conflicts(bot):
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError):
        await first
    assert await second == []


@contextlib.asynccontextmanager
async def webhook_receiver(received: list[tuple[str | None, dict]]):
    """A bot-side webhook endpoint that records (secret header, update); yields its URL."""

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def test_webhook_delivery_with_secret(server, bot):
    received: list[tuple[str | None, dict]] = []
    async with webhook_receiver(received) as url:
        await bot.set_webhook(url, secret_token="s3cret")
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()
        ann = await server.create_user(first_name="Ann")
        await server.send_text(ann.id, "hello hook")
        await server.wait_for(lambda: received, timeout=5)
        secret, update = received[0]
        assert secret == "s3cret" and update["message"]["text"] == "hello hook"
        info = await bot.get_webhook_info()
        assert info.url == url
        await server.wait_for(lambda: server.bot().updates.pending_count == 0, timeout=5)
        await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""


async def test_webhook_failures_are_retried_and_stop_is_prompt(server, bot):
    received: list[tuple[str | None, dict]] = []
    await bot.set_webhook("http://127.0.0.1:9/nobody-listens")
    ann = await server.create_user(first_name="Ann")
    await server.send_text(ann.id, "are you there?")
    await server.wait_for(lambda: server.bot().webhook.last_error_message, timeout=5)
    assert (await bot.get_webhook_info()).pending_update_count == 1
    async with webhook_receiver(received) as url:
        await bot.set_webhook(url)  # the pending update is not lost
        await server.wait_for(lambda: received, timeout=5)
        assert received[0][1]["message"]["text"] == "are you there?"
        async with asyncio.timeout(3):
            await server.stop()  # with a webhook still set: its delivery task must end at once


async def test_real_dispatcher_polling_and_webhook_reply(server, bot):
    """aiogram's own polling loop and its webhook handler (answering with a method) work unchanged."""
    from aiogram import Dispatcher, F, Router
    from aiogram.filters import Command
    from aiogram.types import Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler

    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer(f"<b>Hi</b> {message.from_user.first_name}", parse_mode="HTML")

    @router.message(F.text)
    async def echo(message: Message):
        return message.reply(f"echo: {message.text}")  # returned: goes back in the webhook's response

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    ann = await server.create_user(first_name="Ann")
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1))
    question = await server.send_text(ann.id, "/start")
    answer = await server.wait_for_bot_message(ann.id, after=question.message_id, timeout=5)
    assert answer.text == "Hi Ann" and answer.entities == [{"type": "bold", "offset": 0, "length": 2}]
    await dispatcher.stop_polling()
    await polling

    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False, secret_token="k3y").register(
        app, path="/hook"
    )
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", secret_token="k3y")
        question = await server.send_text(ann.id, "ping")
        answer = await server.wait_for_bot_message(ann.id, after=question.message_id, timeout=5)
        assert answer.text == "echo: ping"
        assert answer.data["reply_to_message"]["message_id"] == question.message_id
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_a_cancel_arriving_with_a_wake_up_is_not_lost():
    """stop() wakes waiters and cancels the webhook task in the same breath; the task must end."""
    queue = UpdateQueue()
    waiter = asyncio.create_task(queue.wait_changed(30.0))
    await asyncio.sleep(0)
    queue.close()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

"""The local Bot API server, driven by a real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat, BufferedInputFile
from aiohttp import web
from PIL import Image

from tests.local_api_helpers import make_bot, png

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user


async def test_get_me_and_wrong_token(server, bot):
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (server.bot().me.id, True, "omni_test_bot")
    stranger = make_bot(server, token="42:WRONG")
    with pytest.raises(TelegramUnauthorizedError):
        await stranger.get_me()
    await stranger.session.close()


async def test_unknown_method_is_404(server):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.base_url}/bot{server.bot().token}/sendTeleport", json={}) as response:
            assert response.status == 404
            assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


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


async def test_send_and_edit_round_trip_with_html(server, bot, user):
    sent = await bot.send_message(
        user.id, "<b>Hello</b>, <i>Ann</i> &amp; co 😀 <code>x</code>", parse_mode="HTML"
    )
    assert sent.text == "Hello, Ann & co 😀 x"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 5),
        ("italic", 7, 3),
        ("code", 19, 1),  # after the emoji: UTF-16 offsets, the emoji counts 2
    ]
    edited = await bot.edit_message_text("Hello again", chat_id=user.id, message_id=sent.message_id)
    assert edited.text == "Hello again" and edited.edit_date
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Hello again", chat_id=user.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=user.id, message_id=999)
    stored = server.bot_messages(user.id)[-1]
    assert stored.text == "Hello again" and stored.edit_count == 1
    assert stored.history[0]["text"] == "Hello, Ann & co 😀 x" and stored.history[0]["parse_mode"] == "HTML"


async def test_injected_429_gives_retry_after(server, bot, user):
    server.inject_retry_after(7, count=2, method="sendMessage")
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(user.id, "hi")
        assert caught.value.retry_after == 7
    await bot.send_message(user.id, "hi")  # the fault is used up
    await bot.send_chat_action(user.id, "typing")  # another method was never affected


async def test_injected_5xx_for_a_while(server, bot, user):
    server.inject_server_error(502, seconds=0.5)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()
    await asyncio.sleep(0.6)
    assert (await bot.get_me()).is_bot


async def test_rate_limit_per_chat(server, bot, user):
    server.set_rate_limits(enabled=True, private_per_second=1.0, private_burst=2)
    await bot.send_message(user.id, "one")
    await bot.send_message(user.id, "two")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(user.id, "three")
    assert caught.value.retry_after == 1
    assert server.max_rate(user.id, window=1.0) == 2


async def test_blocked_user_gives_forbidden(server, bot, user):
    await server.block(user.id)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(user.id, "hello?")
    stranger = await server.create_user(first_name="Bob")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(stranger.id, "hello?")
    updates = await bot.get_updates(allowed_updates=["message", "my_chat_member"])
    assert updates[-1].my_chat_member.new_chat_member.status == "kicked"


async def test_commands_menu_per_scope(server, bot, user):
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands(
        [BotCommand(command="start", description="Start"), BotCommand(command="stats", description="Stats")],
        scope=BotCommandScopeChat(chat_id=user.id),
    )
    await bot.set_my_commands(
        [BotCommand(command="help", description="Help")], scope=BotCommandScopeAllPrivateChats()
    )
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    assert [c["command"] for c in server.commands_for(user.id, user.id)] == ["start", "stats"]
    other = await server.create_user(first_name="Bob")
    assert [c["command"] for c in server.commands_for(other.id, other.id)] == ["help"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Command", description="x")])


async def test_get_file_refuses_big_files(server, bot, user):
    message = await server.send_document(user.id, None, file_name="big.png", file_size=21 * 1024 * 1024)
    file_id = message.data["document"]["file_id"]
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(file_id)


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


async def test_webhook_delivery_with_secret(server, bot):
    received: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
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
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_control_api_over_http(server):
    base = f"{server.base_url}/_control"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/create_user", json={"user_id": 5001, "first_name": "Web"}) as response:
            assert (await response.json())["result"]["id"] == 5001
        async with http.post(f"{base}/send_text", json={"user_id": 5001, "text": "hi /help"}) as response:
            view = (await response.json())["result"]
            assert view["message"]["text"] == "hi /help"
            assert view["message"]["entities"] == [{"type": "bot_command", "offset": 3, "length": 5}]
        form = aiohttp.FormData()
        form.add_field("user_id", "5001")
        form.add_field("caption", "look")
        form.add_field("photo", png(), filename="cat.png", content_type="image/png")
        async with http.post(f"{base}/send_photo", data=form) as response:
            assert (await response.json())["result"]["message"]["caption"] == "look"
        async with http.post(f"{base}/send_text", json={"user_id": 1, "text": "x"}) as response:
            assert response.status == 400 and "create_user" in (await response.json())["error"]
        async with http.get(f"{base}/transcript", params={"chat_id": "5001"}) as response:
            messages = (await response.json())["messages"]
            assert [m["message"].get("text", m["message"].get("caption")) for m in messages] == [
                "hi /help",
                "look",
            ]
    assert server.bot().updates.pending_count == 2


async def test_event_feed_streams_an_edit(server, bot, user):
    sent = await bot.send_message(user.id, "draft")
    events: list[dict] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.base_url}/_control/events", params={"chat_id": str(user.id)}
        ) as response:

            async def read() -> None:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        events.append(event)
                        if event["type"] == "edit":
                            return

            reader = asyncio.create_task(read())
            await server.wait_for(lambda: events, timeout=5)  # "ready": subscribed
            await bot.edit_message_text("final", chat_id=user.id, message_id=sent.message_id)
            await asyncio.wait_for(reader, 5)
    edit = events[-1]
    assert edit["chat_id"] == user.id and edit["message"]["message"]["text"] == "final"
    assert edit["message"]["edit_count"] == 1


async def test_not_found_downloads_and_methods_errors(server, bot, user):
    with pytest.raises(TelegramBadRequest, match="wrong file_id"):
        await bot.get_file("nope")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100123, "x")
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user.id, 12345)


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


async def test_bot_sends_photo_and_document_by_upload_and_file_id(server, bot, user):
    sent = await bot.send_photo(
        user.id, BufferedInputFile(png(400, 300), "p.png"), caption="<i>look</i>", parse_mode="HTML"
    )
    assert [(p.width, p.height) for p in sent.photo] == [(90, 68), (320, 240), (400, 300)]
    assert sent.caption == "look" and sent.caption_entities[0].type == "italic"
    again = await bot.send_photo(user.id, sent.photo[-1].file_id)
    assert again.photo[-1].file_id == sent.photo[-1].file_id
    doc = await bot.send_document(user.id, BufferedInputFile(b"a,b\n1,2\n", "table.csv"))
    assert (doc.document.file_name, doc.document.mime_type, doc.document.file_size) == (
        "table.csv",
        "text/csv",
        8,
    )
    assert (await bot.download(doc.document.file_id)).getvalue() == b"a,b\n1,2\n"
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(user.id, BufferedInputFile(b"not an image", "x.jpg"))


async def test_group_privacy_mode(server, bot):
    ann = await server.create_user(first_name="Ann")
    bob = await server.create_user(first_name="Bob")
    group = await server.create_group("Friends", [ann.id, bob.id])
    await bot.get_updates(offset=-1)  # skip the "bot added" update
    await server.send_text(ann.id, "just chatting", chat_id=group.id)
    await server.send_text(ann.id, "what is this?", chat_id=group.id, mention=True)
    await server.send_text(bob.id, "/help@omni_test_bot", chat_id=group.id)
    await server.send_text(bob.id, "/help@other_bot", chat_id=group.id)
    answer = await bot.send_message(group.id, "an answer")
    await server.send_text(ann.id, "and more?", chat_id=group.id, reply_to=answer.message_id)
    updates = await bot.get_updates(offset=-100)
    texts = [u.message.text for u in updates if u.message]
    assert texts == ["@omni_test_bot what is this?", "/help@omni_test_bot", "and more?"]
    mention = updates[-3].message.entities[0]
    assert (mention.type, mention.offset, mention.length) == ("mention", 0, 14)
    assert updates[-1].message.reply_to_message.message_id == answer.message_id
    assert len(server.transcript(group.id)) == 6  # the members see everything


async def test_buttons_callbacks_chat_info_delete_and_actions(server, bot, user):
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Again", callback_data="retry")]]
    )
    sent = await bot.send_message(user.id, "answer", reply_markup=markup)
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "retry"
    query_id = await server.press_button(user.id, sent.message_id, "retry")
    updates = await bot.get_updates(allowed_updates=["message", "callback_query"])
    assert updates[-1].callback_query.data == "retry" and updates[-1].callback_query.id == query_id
    assert await bot.answer_callback_query(query_id, text="ok")
    assert server.bot().callback_answers[query_id]["text"] == "ok"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)

    chat = await bot.get_chat(user.id)
    assert (chat.type, chat.first_name, chat.username) == ("private", "Ann", "ann")
    member = await bot.get_chat_member(user.id, user.id)
    assert member.status == "member" and member.user.id == user.id

    await bot.send_chat_action(user.id, "typing")
    assert server.chat(user.id).current_action() == "typing"
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(user.id, "dancing")
    assert await bot.delete_message(user.id, sent.message_id)
    assert server.transcript(user.id)[-1].deleted
    assert sent.message_id not in [m.message_id for m in server.bot_messages(user.id)]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user.id, sent.message_id)


async def test_edits_count_against_the_rate_limit(server, bot, user):
    server.set_rate_limits(enabled=True, private_per_second=2.0, private_burst=1)
    sent = await bot.send_message(user.id, "1")
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("2", chat_id=user.id, message_id=sent.message_id)
    await asyncio.sleep(0.55)
    await bot.edit_message_text("2", chat_id=user.id, message_id=sent.message_id)
    assert server.max_rate(user.id, window=0.5) == 1
    assert server.calls["editMessageText"] == 2

"""The local Bot API server, driven by a real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat, BufferedInputFile

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


async def test_not_found_downloads_and_methods_errors(server, bot, user):
    with pytest.raises(TelegramBadRequest, match="wrong file_id"):
        await bot.get_file("nope")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100123, "x")
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user.id, 12345)


async def test_bot_sends_photo_and_document_by_upload_and_file_id(server, bot, user):
    sent = await bot.send_photo(
        user.id, BufferedInputFile(png(400, 300), "p.png"), caption="<i>look</i>", parse_mode="HTML"
    )
    assert [(p.width, p.height) for p in sent.photo] == [(90, 68), (320, 240), (400, 300)]
    assert sent.caption == "look" and sent.caption_entities[0].type == "italic"
    edited = await bot.edit_message_caption(
        chat_id=user.id, message_id=sent.message_id, caption="new caption"
    )
    assert edited.caption == "new caption" and edited.photo[-1].file_id == sent.photo[-1].file_id
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=user.id, message_id=sent.message_id)
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

    unbuttoned = await bot.edit_message_reply_markup(chat_id=user.id, message_id=sent.message_id)
    assert unbuttoned.reply_markup is None and unbuttoned.text == "answer"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=user.id, message_id=sent.message_id)

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


async def test_json_bodies_and_query_strings_are_accepted(server, user):
    """Not only aiogram's forms: JSON with real types, and GET with a query string, as Telegram allows."""
    base = f"{server.base_url}/bot{server.bot().token}"
    keyboard = {"inline_keyboard": [[{"text": "More", "callback_data": "more"}]]}
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": user.id, "text": "*hi*", "parse_mode": "MarkdownV2", "reply_markup": keyboard}
        async with http.post(f"{base}/sendMessage", json=body) as response:
            result = (await response.json())["result"]
        assert result["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
        assert result["reply_markup"] == keyboard
        async with http.get(f"{base}/getChat", params={"chat_id": str(user.id)}) as response:
            assert (await response.json())["result"]["first_name"] == "Ann"
        async with http.post(f"{base}/sendMessage", json={"chat_id": user.id}) as response:
            assert (response.status, (await response.json())["description"]) == (
                400,
                "Bad Request: message text is empty",
            )


async def test_unsupported_content_arrives_as_telegram_types(server, bot):
    ann = await server.create_user(first_name="Ann")
    await server.send_sticker(ann.id, emoji="🐱")
    await server.send_voice(ann.id, duration=3)
    await server.send_video(ann.id, duration=4, caption="clip")
    await server.send_document(ann.id, b"%PDF-1.4 ...", file_name="paper.pdf")
    messages = [u.message for u in await bot.get_updates()]
    assert messages[0].sticker.emoji == "🐱" and messages[0].sticker.width == 512
    assert (messages[1].voice.duration, messages[1].voice.mime_type) == (3, "audio/ogg")
    assert (messages[2].video.duration, messages[2].caption) == (4, "clip")
    assert (messages[3].document.mime_type, messages[3].document.file_name) == (
        "application/pdf",
        "paper.pdf",
    )
    assert (await bot.download(messages[3].document.file_id)).getvalue() == b"%PDF-1.4 ..."


async def test_command_line_server_prints_its_url():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local_bot_api",
        "--port",
        "0",
        "--token",
        "77:CLI",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = line.split("TELEGRAM_API_URL=")[1].rstrip(")\n ")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/bot77:CLI/getMe") as response:
                assert (await response.json())["result"]["id"] == 77
            async with http.get(f"{url}/") as response:
                assert "playground.js" in await response.text()
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0

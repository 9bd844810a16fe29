"""The local Bot API's control side: faults and flood limits as aiogram sees them, the control API over
HTTP, the live event feed and the waiting helpers."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter, TelegramServerError

from local_bot_api import LocalBotAPI
from tests.local_api_helpers import make_bot, png

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user


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


async def test_edits_count_against_the_rate_limit(server, bot, user):
    server.set_rate_limits(enabled=True, private_per_second=2.0, private_burst=1)
    sent = await bot.send_message(user.id, "1")
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("2", chat_id=user.id, message_id=sent.message_id)
    await asyncio.sleep(0.55)
    await bot.edit_message_text("2", chat_id=user.id, message_id=sent.message_id)
    assert server.max_rate(user.id, window=0.5) == 1
    assert server.calls["editMessageText"] == 2


async def test_blocked_user_gives_forbidden(server, bot, user):
    await server.block(user.id)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(user.id, "hello?")
    stranger = await server.create_user(first_name="Bob")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(stranger.id, "hello?")
    updates = await bot.get_updates(allowed_updates=["message", "my_chat_member"])
    assert updates[-1].my_chat_member.new_chat_member.status == "kicked"


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


async def test_faults_and_counts_over_http(server, bot, user):
    base = f"{server.base_url}/_control"
    async with aiohttp.ClientSession() as http:
        body = {"retry_after": 4, "count": 1, "method": "editMessageText"}
        async with http.post(f"{base}/inject_retry_after", json=body) as response:
            assert (await response.json())["result"]["count"] == 1
        sent = await bot.send_message(user.id, "a")
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.edit_message_text("b", chat_id=user.id, message_id=sent.message_id)
        assert caught.value.retry_after == 4
        async with http.post(f"{base}/inject_server_error", json={"status": 502, "count": 1}) as response:
            assert response.status == 200
        async with http.post(f"{base}/clear_faults") as response:
            assert response.status == 200
        await bot.edit_message_text("b", chat_id=user.id, message_id=sent.message_id)
        async with http.post(f"{base}/block", json={"user_id": user.id}) as response:
            assert response.status == 200
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(user.id, "c")
        async with http.get(f"{base}/calls") as response:
            counts = (await response.json())["counts"]
    assert counts["editMessageText"] == 2 and counts["sendMessage"] == 2


async def test_wait_until_quiet_returns_the_final_streamed_answer(server, bot, user):
    question = server.transcript(user.id)[-1]

    async def stream() -> None:
        await bot.send_chat_action(user.id, "typing")
        await asyncio.sleep(0.3)
        draft = await bot.send_message(user.id, "…")
        for text in ("The", "The answer", "The answer is 42."):
            await asyncio.sleep(0.2)
            await bot.edit_message_text(text, chat_id=user.id, message_id=draft.message_id)

    streaming = asyncio.create_task(stream())
    first = await server.wait_for_bot_message(user.id, after=question.message_id, timeout=5)
    assert first.text in ("…", "The")
    final = await server.wait_until_quiet(user.id, after=question.message_id, quiet=0.5, timeout=10)
    assert streaming.done()
    await streaming
    assert [m.text for m in final] == ["The answer is 42."]
    assert [h["text"] for h in final[0].history] == ["…", "The", "The answer"]
    with pytest.raises(TimeoutError, match="waited 0.2 s"):
        await server.wait_for(lambda: False, timeout=0.2, what="nothing")


async def test_one_server_hosts_several_bots():
    async with LocalBotAPI("111:AAA", bot_username="first_bot") as server:
        server.add_bot("222:BBB", username="second_bot")
        first, second = make_bot(server, "111:AAA"), make_bot(server, "222:BBB")
        try:
            assert [(await b.get_me()).username for b in (first, second)] == ["first_bot", "second_bot"]
            ann = await server.create_user(first_name="Ann")
            await server.send_text(ann.id, "to the second", token="222:BBB")
            await server.send_photo(ann.id, png(50, 50), token="111:AAA")
            assert [u.message.text for u in await second.get_updates()] == ["to the second"]
            assert [bool(u.message.photo) for u in await first.get_updates()] == [True]
            await second.send_message(ann.id, "hello from two")
            assert [m.text for m in server.bot_messages(ann.id, token="222:BBB")] == ["hello from two"]
            assert server.bot_messages(ann.id) == []
        finally:
            await first.session.close()
            await second.session.close()

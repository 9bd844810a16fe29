"""The playground's server side without a browser: the sample-picture tray and the banner as data given to
the server, the page's files, and the state kept on disk across a restart (history, files, port)."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
from aiogram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, ReactionTypeEmoji

from local_bot_api import ControlError, LocalBotAPI
from tests.local_api_helpers import BOT_USERNAME, make_bot, png

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user


async def test_tray_samples_and_banner_are_data_given_to_the_server(server, bot, user):
    picture = png(64, 48, "orange")
    config = server.set_playground(
        banner="Demo model:  tiny.\nUse real weights", samples=[("sun", picture, "What?")]
    )
    assert config["banner"] == "Demo model: tiny. Use real weights"  # one line
    assert config["samples"] == [{"name": "sun", "caption": "What?", "url": "/_control/samples/sun"}]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/_control/playground") as response:
            assert (await response.json())["samples"][0]["name"] == "sun"
        async with http.get(f"{server.base_url}/_control/samples/sun") as response:
            assert (response.content_type, await response.read()) == ("image/png", picture)
        body = {
            "samples": [{"name": "moon", "caption": "", "data_base64": base64.b64encode(picture).decode()}]
        }
        async with http.post(f"{server.base_url}/_control/set_playground", json=body) as response:
            assert [s["name"] for s in (await response.json())["result"]["samples"]] == ["moon"]
        async with http.post(
            f"{server.base_url}/_control/send_sample", json={"user_id": user.id, "name": "moon"}
        ) as r:
            assert r.status == 200
        async with http.post(
            f"{server.base_url}/_control/send_sample", json={"user_id": user.id, "name": "sun"}
        ) as r:
            assert r.status == 400 and "no sample picture 'sun'" in (await r.json())["error"]
    photo = (await bot.get_updates())[-1].message.photo
    assert (await bot.download(photo[-1].file_id)).getvalue() == picture  # the bot gets the very bytes
    assert server.playground.banner == "Demo model: tiny. Use real weights"  # None left it as it was
    with pytest.raises(ControlError, match="not an image"):
        server.set_playground(samples=[("broken", b"nope", "")])
    with pytest.raises(ControlError, match="sample name"):
        server.set_playground(samples=[("../etc", picture, "")])


async def test_page_and_its_modules_are_served(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/") as response:
            page = await response.text()
        assert 'type="module"' in page and "playground.css" in page
        for asset in ("playground.js", "playground_render.js", "playground.css"):
            async with http.get(f"{server.base_url}/{asset}") as response:
                assert response.status == 200, asset
                assert response.content_type in ("text/javascript", "application/javascript", "text/css")
        for missing in ("playground_nope.js", "server.py", "playground.js.bak"):
            async with http.get(f"{server.base_url}/{missing}") as response:
                assert response.status == 404, missing


async def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state.json"
    photo = png(300, 200, "navy")
    async with LocalBotAPI(bot_username=BOT_USERNAME, state_path=state) as first:
        bot = make_bot(first)
        ann = await first.create_user(first_name="Ann", language_code="ru")
        group = await first.create_group("Friends", [ann.id])
        question = await first.send_photo(ann.id, photo, caption="what is it?")
        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="More", callback_data="m")]]
        )
        answer = await bot.send_message(ann.id, "<b>A</b> square", parse_mode="HTML", reply_markup=markup)
        await bot.edit_message_text(
            "<b>A</b> navy square",
            chat_id=ann.id,
            message_id=answer.message_id,
            parse_mode="HTML",
            reply_markup=markup,
        )
        await bot.set_message_reaction(ann.id, question.message_id, [ReactionTypeEmoji(emoji="👀")])
        await first.react(ann.id, answer.message_id, "👍")
        await bot.set_my_commands([BotCommand(command="new", description="New dialog")])
        await bot.set_my_description("I describe pictures.")
        port = first.port
        before = [m.to_json() for m in first.transcript(ann.id)]
        await bot.session.close()
    assert json.loads(state.read_text())["port"] == port

    async with LocalBotAPI(bot_username=BOT_USERNAME, state_path=state) as second:
        bot = make_bot(second)
        assert [m.to_json() for m in second.transcript(ann.id)] == before  # text, entities, edits, reactions
        assert second.users[ann.id].language_code == "ru" and second.chat(group.id).title == "Friends"
        restored = second.transcript(ann.id)[0].data["photo"][-1]["file_id"]
        assert (await bot.download(restored)).getvalue() == photo  # files come back with their bytes
        assert [c.command for c in await bot.get_my_commands()] == ["new"]
        assert (await bot.get_my_description()).description == "I describe pictures."
        later = await bot.send_message(ann.id, "numbering goes on")
        assert later.message_id == answer.message_id + 1
        bob = await second.create_user(first_name="Bob")
        assert bob.id == ann.id + 1  # ids are not handed out twice
        assert second.bot().updates.pending_count == 0  # pending updates are not kept, as documented
        await bot.session.close()


async def test_state_is_saved_while_the_server_runs(tmp_path):
    """Not only at a clean stop: a killed `make demo` loses at most the last second."""
    state = tmp_path / "state.json"
    async with LocalBotAPI(state_path=state) as server:
        ann = await server.create_user(first_name="Ann")
        await server.send_text(ann.id, "saved soon")
        await asyncio.sleep(1.5)
        saved = json.loads(state.read_text())
        chat = saved["bots"][server.bot().token]["chats"][0]
        assert [m["data"]["text"] for m in chat["messages"]] == ["saved soon"]


async def test_a_broken_state_file_is_moved_aside(tmp_path):
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "users": [{"id": "oops"')
    async with LocalBotAPI(state_path=state) as server:
        assert server.users == {}
        ann = await server.create_user(first_name="Ann")
        await server.send_text(ann.id, "hello")
    assert [p.name.startswith("state.json.broken-") for p in tmp_path.iterdir() if p.is_file()].count(
        True
    ) == 1
    assert json.loads(state.read_text())["users"][0]["first_name"] == "Ann"  # and a new one was written

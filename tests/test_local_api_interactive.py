"""The local Bot API's live chat features through a real aiogram Bot over HTTP: streamed drafts with a stop
button, inline buttons and callback answers, reactions both ways, descriptions, documents from users, and
messages posted on behalf of a chat."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReactionTypeCustomEmoji,
    ReactionTypeEmoji,
)

from local_bot_api import ControlError

pytest_plugins = ("tests.local_api_fixtures",)  # server, bot, user

WITH_REACTIONS = ["message", "callback_query", "message_reaction", "stopped_message_generation"]


async def drain(bot, allowed_updates: list[str] | None = None) -> list:
    """Every pending update, confirmed (so later reads see only what comes next)."""
    updates = await bot.get_updates(allowed_updates=allowed_updates)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1)
    return updates


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d) for d in data]]
    )


async def test_draft_is_replaced_by_each_call_and_disappears(server, bot, user):
    assert await bot.send_message_draft(chat_id=user.id, draft_id=7, text="")  # "Thinking…"
    await bot.send_message_draft(chat_id=user.id, draft_id=7, text="The <b>answer</b>", parse_mode="HTML")
    draft = server.draft(user.id)
    assert (draft.draft_id, draft.text, draft.versions) == (7, "The answer", ["", "The answer"])
    assert draft.entities == [{"type": "bold", "offset": 4, "length": 6}] and not draft.can_stop
    await bot.send_message_draft(chat_id=user.id, draft_id=8, text="another one")
    assert (server.draft(user.id).draft_id, server.draft(user.id).versions) == (8, ["another one"])

    await bot.send_message(user.id, "The answer is 42.")  # the final answer replaces the draft
    assert server.draft(user.id) is None
    assert [m.text for m in server.bot_messages(user.id)] == ["The answer is 42."]  # drafts leave nothing

    server.draft_lifetime = 0.3
    await bot.send_message_draft(chat_id=user.id, draft_id=9, text="soon gone")
    assert server.draft(user.id).text == "soon gone"
    await asyncio.sleep(0.4)
    assert server.draft(user.id) is None  # 30 s (here 0.3 s) without an update


async def test_draft_is_refused_where_telegram_refuses_it(server, bot, user):
    group = await server.create_group("Friends", [user.id])
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_message_draft(chat_id=group.id, draft_id=1, text="hi")
    with pytest.raises(TelegramBadRequest, match="draft_id must be non-zero"):
        await bot.send_message_draft(chat_id=user.id, draft_id=0, text="hi")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message_draft(chat_id=user.id, draft_id=1, text="x" * 4097)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message_draft(chat_id=user.id, draft_id=1, text="<b>open", parse_mode="HTML")
    assert server.draft(user.id) is None


async def test_wait_until_quiet_waits_while_a_draft_is_on_screen(server, bot, user):
    question = server.transcript(user.id)[-1]

    async def stream() -> None:
        await bot.send_message(user.id, "Let me look…")
        for text in ("The", "The answer", "The answer is"):
            await bot.send_message_draft(chat_id=user.id, draft_id=3, text=text)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.6)  # longer than `quiet`, with the draft still showing
        await bot.send_message(user.id, "The answer is 42.")

    streaming = asyncio.create_task(stream())
    final = await server.wait_until_quiet(user.id, after=question.message_id, quiet=0.3, timeout=10)
    await streaming
    assert [m.text for m in final] == ["Let me look…", "The answer is 42."]


async def test_stop_button_queues_stopped_message_generation(server, bot, user):
    await drain(bot)
    await bot.send_message_draft(chat_id=user.id, draft_id=5, text="Once upon", can_stop=True)
    await server.stop_draft(user.id)
    (update,) = await drain(bot, WITH_REACTIONS)
    stopped = update.stopped_message_generation
    assert (stopped.chat.id, stopped.chat.type, stopped.draft_id) == (user.id, "private", 5)
    assert server.draft(user.id) is None
    # the generation was stopped: later drafts with that id are accepted and not shown
    assert await bot.send_message_draft(chat_id=user.id, draft_id=5, text="Once upon a time")
    assert server.draft(user.id) is None

    await bot.send_message_draft(chat_id=user.id, draft_id=6, text="kept", can_stop=True, keep_on_stop=True)
    async with aiohttp.ClientSession() as http:  # the playground presses stop over HTTP
        async with http.post(f"{server.base_url}/_control/stop_draft", json={"user_id": user.id}) as response:
            assert (await response.json())["result"]["draft_id"] == 6
        async with http.post(f"{server.base_url}/_control/stop_draft", json={"user_id": user.id}) as response:
            assert response.status == 400 and "no stop button" in (await response.json())["error"]
    assert server.draft(user.id).stopped and server.draft(user.id).text == "kept"

    await bot.send_message_draft(chat_id=user.id, draft_id=7, text="no button")
    with pytest.raises(ControlError, match="without can_stop"):
        await server.stop_draft(user.id)


async def test_buttons_and_callback_answers(server, bot, user):
    sent = await bot.send_message(user.id, "Was this useful?", reply_markup=keyboard("yes", "no"))
    first = await server.press_button(user.id, sent.message_id, "yes")
    second = await server.press_button(user.id, sent.message_id, "no")
    assert first != second
    updates = [
        u.callback_query for u in await bot.get_updates(allowed_updates=WITH_REACTIONS) if u.callback_query
    ]
    assert [(q.id, q.data, q.from_user.id, q.message.message_id) for q in updates] == [
        (first, "yes", user.id, sent.message_id),
        (second, "no", user.id, sent.message_id),
    ]
    assert await bot.answer_callback_query(first, text="Thanks!", show_alert=True)
    assert server.bot().callback_answers[first] == {
        "text": "Thanks!",
        "show_alert": True,
        "url": None,
        "cache_time": 0,
    }
    assert server.bot().callback_answers[second] is None
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(first)  # answered already
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("12345")
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(second, text="x" * 201)

    server.callback_query_timeout = 0.2
    late = await server.press_button(user.id, sent.message_id, "yes")
    await asyncio.sleep(0.3)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(late)

    await bot.edit_message_reply_markup(
        chat_id=user.id, message_id=sent.message_id, reply_markup=keyboard("more")
    )
    with pytest.raises(ControlError, match="no button with callback_data 'yes'"):
        await server.press_button(user.id, sent.message_id, "yes")
    await server.press_button(user.id, sent.message_id, "more")
    edited = await bot.edit_message_text("Edited", chat_id=user.id, message_id=sent.message_id)
    assert edited.reply_markup is None  # an edit without reply_markup drops the keyboard, as in Telegram


async def test_button_in_a_group(server, bot, user):
    group = await server.create_group("Friends", [user.id])
    sent = await bot.send_message(group.id, "Vote", reply_markup=keyboard("up"))
    query_id = await server.press_button(user.id, sent.message_id, "up", chat_id=group.id)
    query = (await bot.get_updates(allowed_updates=WITH_REACTIONS))[-1].callback_query
    assert (query.id, query.message.chat.id, query.from_user.id) == (query_id, group.id, user.id)


async def test_bot_reacts_to_a_user_message(server, bot, user):
    question = server.transcript(user.id)[-1]
    pending = server.bot().updates.pending_count
    eyes = [ReactionTypeEmoji(emoji="👀")]
    assert await bot.set_message_reaction(user.id, question.message_id, eyes, is_big=True)
    assert question.reactions == {server.bot().me.id: [{"type": "emoji", "emoji": "👀"}]}
    assert server.bot().updates.pending_count == pending  # no update for the bot's own reaction
    for reaction, error in (
        ([ReactionTypeEmoji(emoji="🦖")], "REACTION_INVALID"),  # not on Telegram's list
        ([ReactionTypeCustomEmoji(custom_emoji_id="5368324170671202286")], "REACTION_INVALID"),
        ([ReactionTypeEmoji(emoji="👍"), ReactionTypeEmoji(emoji="🔥")], "REACTIONS_TOO_MANY"),
    ):
        with pytest.raises(TelegramBadRequest, match=error):
            await bot.set_message_reaction(user.id, question.message_id, reaction)
    with pytest.raises(TelegramBadRequest, match="message to react not found"):
        await bot.set_message_reaction(user.id, 999, eyes)
    assert question.reactions[server.bot().me.id][0]["emoji"] == "👀"  # refused calls changed nothing
    assert await bot.set_message_reaction(user.id, question.message_id, [])
    assert question.reactions == {}

    quiet = await server.create_group("No reactions", [user.id], reactions_enabled=False)
    said = await server.send_text(user.id, "/start", chat_id=quiet.id)
    with pytest.raises(TelegramBadRequest, match="REACTION_INVALID"):
        await bot.set_message_reaction(quiet.id, said.message_id, eyes)
    url = f"{server.base_url}/bot{server.bot().token}/setMessageReaction"
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": user.id, "message_id": question.message_id, "reaction": "[{"}
        async with http.post(url, json=body) as response:
            assert (await response.json())[
                "description"
            ] == "Bad Request: can't parse reaction types JSON object"


async def test_user_reactions_reach_the_bot_only_when_asked_for(server, bot, user):
    answer = await bot.send_message(user.id, "An answer")
    await drain(bot, ["message"])  # like the default, leaves reactions out
    await server.react(user.id, answer.message_id, "👍")
    assert server.bot().updates.pending_count == 0

    await drain(bot, WITH_REACTIONS)
    await server.react(user.id, answer.message_id, "👎")
    await server.react(user.id, answer.message_id, "👎")  # the same again changes nothing: no update
    await server.react(user.id, answer.message_id, None)
    changes = [u.message_reaction for u in await drain(bot, WITH_REACTIONS)]
    assert [([r.emoji for r in c.old_reaction], [r.emoji for r in c.new_reaction]) for c in changes] == [
        (["👍"], ["👎"]),
        (["👎"], []),
    ]
    assert (changes[0].user.id, changes[0].chat.id, changes[0].message_id) == (
        user.id,
        user.id,
        answer.message_id,
    )
    with pytest.raises(ControlError, match="one reaction"):
        await server.react(user.id, answer.message_id, ["👍", "🔥"])
    with pytest.raises(ControlError, match="not allowed"):
        await server.react(user.id, answer.message_id, "🦖")

    # in a group the bot must be an admin to hear about reactions
    for is_admin in (False, True):
        group = await server.create_group("Friends", [user.id], bot_is_admin=is_admin)
        said = await bot.send_message(group.id, "in the group")
        await server.react(user.id, said.message_id, "🔥", chat_id=group.id)
        reactions = [u for u in await drain(bot, WITH_REACTIONS) if u.message_reaction]
        assert len(reactions) == int(is_admin)


async def test_descriptions_per_language_with_limits(bot):
    assert await bot.set_my_description("I describe pictures.")
    await bot.set_my_description("Я описываю картинки.", language_code="ru")
    await bot.set_my_short_description("Pictures → words")
    assert (await bot.get_my_description()).description == "I describe pictures."
    assert (await bot.get_my_description(language_code="ru")).description == "Я описываю картинки."
    assert (await bot.get_my_description(language_code="de")).description == ""
    assert (await bot.get_my_short_description()).short_description == "Pictures → words"
    await bot.set_my_description("d" * 512)
    with pytest.raises(TelegramBadRequest, match="description is too long"):
        await bot.set_my_description("d" * 513)
    await bot.set_my_short_description("s" * 120)
    with pytest.raises(TelegramBadRequest, match="short description is too long"):
        await bot.set_my_short_description("s" * 121)
    with pytest.raises(TelegramBadRequest, match="invalid language code"):
        await bot.set_my_description("x", language_code="english")
    await bot.set_my_description("", language_code="ru")  # empty: removed
    assert (await bot.get_my_description(language_code="ru")).description == ""
    assert (await bot.get_my_description()).description == "d" * 512


async def test_users_send_any_document_and_the_bot_downloads_it(server, bot, user):
    files = [
        ("paper.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40),
        ("notes.txt", "text/plain", "привет, notes\n".encode()),
        ("script.py", "application/octet-stream", b"print('hi')\n"),  # browsers often say octet-stream
    ]
    async with aiohttp.ClientSession() as http:
        for name, kind, data in files:
            form = aiohttp.FormData()
            form.add_field("user_id", str(user.id))
            form.add_field("caption", f"read {name}")
            form.add_field("document", data, filename=name, content_type=kind)
            async with http.post(f"{server.base_url}/_control/send_document", data=form) as response:
                assert response.status == 200, await response.text()
    messages = [u.message for u in await bot.get_updates() if u.message and u.message.document]
    assert [(m.document.file_name, m.document.mime_type, m.caption) for m in messages] == [
        ("paper.pdf", "application/pdf", "read paper.pdf"),
        ("notes.txt", "text/plain", "read notes.txt"),
        ("script.py", "text/x-python", "read script.py"),  # guessed from the name
    ]
    for message, (_, _, data) in zip(messages, files, strict=True):
        assert message.document.file_size == len(data)
        file = await bot.get_file(message.document.file_id)
        assert file.file_path.endswith(message.document.file_name.rsplit(".", 1)[1])
        assert (await bot.download(file)).getvalue() == data


async def test_messages_on_behalf_of_a_channel_or_an_anonymous_admin(server, bot, user):
    group = await server.create_group("Friends", [user.id])
    await drain(bot)
    await server.send_as_channel(
        group.id, "/start from the channel", channel_title="News", channel_username="news"
    )
    await server.send_as_channel(group.id, "not for the bot")  # privacy mode: no update
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": group.id, "text": "@omni_test_bot hello", "author_signature": "Boss"}
        async with http.post(f"{server.base_url}/_control/send_as_anonymous_admin", json=body) as response:
            assert response.status == 200, await response.text()
    channel_post, admin_post = [u.message for u in await drain(bot)]
    assert (channel_post.from_user.id, channel_post.from_user.username) == (136817688, "Channel_Bot")
    assert (channel_post.sender_chat.type, channel_post.sender_chat.title) == ("channel", "News")
    assert channel_post.entities[0].type == "bot_command"
    assert (admin_post.from_user.id, admin_post.sender_chat.id) == (1087968824, group.id)
    assert admin_post.author_signature == "Boss"
    assert len(server.transcript(group.id)) == 3  # the members see all of them
    with pytest.raises(ControlError, match="no group"):
        await server.send_as_channel(user.id, "a private chat has no channel posts")

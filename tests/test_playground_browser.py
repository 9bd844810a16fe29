"""The playground page in a real headless Chromium, chatting with an aiogram bot through the local server.

The bot here is a small stand-in written with aiogram (the real bot's browser run is in
tests/test_local_api_demo.py): it streams answers by edits and by drafts with a stop button, sends inline
buttons and answers their callbacks, reacts and hears reactions, and downloads photos and documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    MessageGenerationStopped,
    MessageReactionUpdated,
    ReactionTypeEmoji,
    ReplyKeyboardMarkup,
)

from tests.local_api_helpers import make_bot, png

pytest_plugins = ("tests.local_api_fixtures",)  # server
async_playwright = pytest.importorskip("playwright.async_api").async_playwright
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)"),
]
AT_END = "() => { const l = document.getElementById('log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 2 }"


def stand_in_router() -> Router:
    router = Router()
    stops: dict[int, asyncio.Event] = {}

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer(
            "<b>Hello!</b> <tg-spoiler>secret</tg-spoiler> &lt;script&gt;alert(1)&lt;/script&gt; Try /help",
            parse_mode="HTML",
            reply_markup=ReplyKeyboardMarkup(
                keyboard=[[KeyboardButton(text="what is up")]], resize_keyboard=True
            ),
        )

    @router.message(Command("buttons"))
    async def buttons(message: Message) -> None:
        row = [InlineKeyboardButton(text=t, callback_data=t.lower()) for t in ("Thanks", "Alert")]
        await message.answer("Pick one", reply_markup=InlineKeyboardMarkup(inline_keyboard=[row]))

    @router.callback_query(F.data == "thanks")
    async def thanks(query: CallbackQuery) -> None:
        await query.answer("You are welcome!")

    @router.callback_query(F.data == "alert")
    async def alert(query: CallbackQuery) -> None:
        await query.answer("Are you sure?", show_alert=True)

    @router.message(Command("draft"))
    async def draft(message: Message, bot: Bot) -> None:
        stop = stops[message.chat.id] = asyncio.Event()
        text = ""
        for word in ("Once", " upon", " a", " time", *[" and"] * 40):
            text += word
            await bot.send_message_draft(
                chat_id=message.chat.id, draft_id=message.message_id, text=text, can_stop=True
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.4)
            if stop.is_set():
                break
        await message.answer(("Stopped at: " if stop.is_set() else "Done: ") + text)

    @router.stopped_message_generation()
    async def stopped(event: MessageGenerationStopped) -> None:
        stops[event.chat.id].set()

    @router.message_reaction()
    async def reacted(event: MessageReactionUpdated, bot: Bot) -> None:
        emoji = [r.emoji for r in event.new_reaction]
        await bot.send_message(event.chat.id, f"You reacted {emoji[0]}" if emoji else "Reaction removed")

    @router.message(F.photo)
    async def photo(message: Message, bot: Bot) -> None:
        data = await bot.download(message.photo[-1].file_id)
        await asyncio.sleep(0.3)  # the page has shown the photo by now; the answer comes below it
        await message.reply(f"Got {len(data.getvalue())} bytes, caption: {message.caption}")

    @router.message(F.document)
    async def document(message: Message, bot: Bot) -> None:
        data = (await bot.download(message.document.file_id)).getvalue()
        doc = message.document
        await message.reply(f"Got {doc.file_name} ({doc.mime_type}), {len(data)} bytes: {data.decode()[:20]}")

    @router.message(F.text)
    async def stream(message: Message, bot: Bot) -> None:
        await bot.set_message_reaction(message.chat.id, message.message_id, [ReactionTypeEmoji(emoji="👀")])
        await bot.send_chat_action(message.chat.id, "typing")
        await asyncio.sleep(0.8)
        draft = await message.answer("…")
        text = ""
        for word in ("Streaming", " answer", " to:", f" {message.text}"):
            await asyncio.sleep(0.2)
            text += word
            await draft.edit_text(text)

    return router


@pytest.fixture
async def running_bot(server):
    bot = make_bot(server)
    await bot.set_my_commands(
        [BotCommand(command=c, description=c.title()) for c in ("start", "help", "new")]
    )
    await bot.set_my_description("I am a stand-in bot for the browser tests.")
    dispatcher = Dispatcher()
    dispatcher.include_router(stand_in_router())
    # aiogram asks for the update types its handlers use: message_reaction and stopped_message_generation too
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1))
    yield bot
    await dispatcher.stop_polling()
    await polling
    await bot.session.close()


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


async def open_page(browser, server, width: int = 900, height: int = 700):
    page = await (await browser.new_context(viewport={"width": width, "height": height})).new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    await page.goto(f"{server.base_url}/")
    await page.locator("#status", has_text="online").wait_for(timeout=10_000)
    return page, int((await page.inner_text("#whoami")).split()[-1])


async def send(page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("form button[type=submit]")


async def test_playground_chat_in_chromium(server, running_bot, browser, tmp_path):
    photo_bytes = png(640, 480, "teal")
    (tmp_path / "cat.png").write_bytes(photo_bytes)
    page, _ = await open_page(browser, server)
    # an empty chat shows the bot's description; the bot sets it as it starts, which under load can come after the
    # page is online (a "profile" event then fills it in)
    intro = "I am a stand-in bot for the browser tests."
    await page.locator("#intro", has_text=intro).wait_for(timeout=10_000)
    assert await page.inner_text("#intro") == intro
    # the bot's command menu, clickable
    await page.locator("#menu button", has_text="/new").wait_for(timeout=5000)
    await page.locator("#menu button", has_text="/start").click()
    reply = page.locator(".msg:not(.me)", has_text="Hello!")
    await reply.wait_for(timeout=5000)
    assert await page.locator("#intro").is_hidden()
    assert await reply.locator("b").inner_text() == "Hello!"
    assert await reply.locator(".spoiler").inner_text() == "secret"
    assert "<script>alert(1)</script>" in await reply.inner_text()  # shown as text, never run
    assert await page.locator(".msg script").count() == 0
    assert await reply.locator("a.cmd", has_text="/help").count() == 1

    # a reply-keyboard button sends its text; "typing…", then an answer growing by edits
    await page.locator("#replykb button", has_text="what is up").click()
    await page.locator("#typing", has_text="typing").wait_for(timeout=5000)
    answer = page.locator(".msg:not(.me)", has_text="Streaming answer to: what is up")
    await answer.wait_for(timeout=8000)
    assert "edited" in await answer.locator(".meta").inner_text()

    # a photo with a caption reaches the bot byte for byte
    await page.set_input_files("#attach", str(tmp_path / "cat.png"))
    await send(page, "my cat")
    await page.locator(".msg", has_text=f"Got {len(photo_bytes)} bytes, caption: my cat").wait_for(
        timeout=8000
    )
    assert await page.locator(".msg.me img").count() == 1

    # another browser is another Telegram user, with a chat of its own
    other, _ = await open_page(browser, server)
    first_id, second_id = await page.inner_text("#whoami"), await other.inner_text("#whoami")
    assert first_id != second_id and await other.locator(".msg").count() == 0
    assert page.errors == [] and other.errors == []
    assert len(server.users) == 2


async def test_answer_after_a_photo_stays_in_view_and_a_reload_lands_at_the_bottom(
    server, running_bot, browser, tmp_path
):
    (tmp_path / "tall.png").write_bytes(png(300, 900, "purple"))
    page, user_id = await open_page(browser, server)
    await page.locator("#menu button", has_text="/start").click()
    await page.locator(".msg:not(.me)", has_text="Hello!").wait_for(timeout=5000)
    for i in range(15):  # a long chat: the log scrolls
        await running_bot.send_message(user_id, f"line {i}\n" * 3)
    await page.locator(".msg", has_text="line 14").wait_for(timeout=5000)
    assert await page.evaluate(AT_END)

    await page.set_input_files("#attach", str(tmp_path / "tall.png"))
    await page.click("form button[type=submit]")
    answer = page.locator(".msg:not(.me)", has_text="Got")
    await answer.wait_for(timeout=8000)
    await page.wait_for_function("[...document.images].every((img) => img.complete)")
    await page.wait_for_timeout(200)
    assert await page.evaluate(AT_END), "the answer below the photo is out of view"

    await page.reload()
    await answer.wait_for(timeout=8000)
    await page.wait_for_function("[...document.images].every((img) => img.complete && img.naturalHeight)")
    await page.wait_for_timeout(200)
    assert await page.evaluate(AT_END), "a reload does not land at the bottom"
    assert page.errors == []


async def test_sample_tray_and_banner(server, running_bot, browser):
    picture = png(200, 150, "gold")
    server.set_playground(
        banner="Demo model: tiny (noise).", samples=[("sun", picture, "What is on this picture?")]
    )
    page, _ = await open_page(browser, server)
    assert await page.inner_text("#banner") == "Demo model: tiny (noise)."
    await page.locator("#tray .sample img[alt=sun]").click()
    await page.locator(
        ".msg", has_text=f"Got {len(picture)} bytes, caption: What is on this picture?"
    ).wait_for(timeout=8000)
    assert await page.locator(".msg.me img").count() == 1
    assert page.errors == []


async def test_buttons_send_callback_queries_and_show_the_answers(server, running_bot, browser):
    page, _ = await open_page(browser, server)
    await send(page, "/buttons")
    await page.locator(".msg .keyboard button", has_text="Thanks").click()
    await page.locator("#toast", has_text="You are welcome!").wait_for(timeout=5000)
    await page.locator(".msg .keyboard button", has_text="Alert").click()
    await page.locator("#alert", has_text="Are you sure?").wait_for(timeout=5000)
    await page.click("#alert-ok")
    assert await page.locator("#alert").is_hidden()
    answers = sorted(a["text"] for a in server.bot().callback_answers.values())
    assert answers == ["Are you sure?", "You are welcome!"]
    assert page.errors == []


async def test_document_upload(server, running_bot, browser, tmp_path):
    (tmp_path / "notes.txt").write_text("hello from a file\n")
    page, _ = await open_page(browser, server)
    await page.set_input_files("#attach", str(tmp_path / "notes.txt"))
    await send(page, "read this")
    await page.locator(".msg", has_text="Got notes.txt (text/plain), 18 bytes: hello from a file").wait_for(
        timeout=8000
    )
    sent = page.locator(".msg.me a.file")
    assert "notes.txt" in await sent.inner_text() and await page.inner_text(".msg.me") != ""
    assert page.errors == []


async def test_draft_is_shown_live_and_can_be_stopped(server, running_bot, browser):
    page, _ = await open_page(browser, server)
    await send(page, "/draft")
    draft = page.locator("#draft")
    await draft.locator(".text", has_text="Once upon a time").wait_for(timeout=8000)
    await draft.locator("button.stop").click()
    final = page.locator(".msg:not(.draft)", has_text="Stopped at: Once upon a time")
    await final.wait_for(timeout=8000)
    assert await page.locator("#draft").count() == 0  # the final message replaced it
    assert page.errors == []


async def test_reactions_both_ways(server, running_bot, browser):
    page, _ = await open_page(browser, server)
    await send(page, "hello")
    await page.locator(".msg.me .chip", has_text="👀").wait_for(timeout=8000)  # the bot reacted
    answer = page.locator(".msg:not(.me)", has_text="Streaming answer to: hello")
    await answer.wait_for(timeout=8000)
    await answer.locator('button.react[data-emoji="👍"]').click()
    await page.locator(".msg:not(.me)", has_text="You reacted 👍").wait_for(timeout=8000)
    assert await answer.locator(".chip.mine").inner_text() == "👍"
    await answer.locator('button.react[data-emoji="👍"]').click()  # again: removed
    await page.locator(".msg:not(.me)", has_text="Reaction removed").wait_for(timeout=8000)
    assert await answer.locator(".chip").count() == 0
    assert page.errors == []


async def test_header_fits_a_phone_screen(server, running_bot, browser):
    page, _ = await open_page(browser, server, width=390, height=800)
    server.set_playground(
        banner="Demo model: tiny, random weights; for real answers use real weights (README)"
    )
    await page.locator("#banner").wait_for(timeout=5000)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = await page.evaluate(
        "[...document.querySelectorAll('header *, #banner, form *')].filter((e) => e.offsetParent)"
        ".map((e) => { const r = e.getBoundingClientRect(); return [e.id || e.tagName, r.left, r.right]; })"
    )
    assert all(left >= 0 and right <= 390 for _, left, right in boxes), boxes
    assert (await page.locator("header").bounding_box())["height"] <= 80
    assert page.errors == []


async def test_group_toggle_needs_a_mention_or_a_reply(server, running_bot, browser):
    page, user_id = await open_page(browser, server)
    await page.check("#group")
    await page.locator("#menu button", has_text="@omni_test_bot").wait_for(timeout=5000)
    group_id = next(chat.id for chat in server.bot().chats.values() if chat.is_group)
    await send(page, "just chatting")  # privacy mode: the bot does not see it
    await page.locator("#menu button", has_text="@omni_test_bot").click()
    await page.locator("#text").press_sequentially("are you there?")
    await page.click("form button[type=submit]")
    answer = page.locator(".msg:not(.me)", has_text="Streaming answer to: @omni_test_bot are you there?")
    await answer.wait_for(timeout=8000)
    await answer.locator("button.reply").click()  # a reply to the bot reaches it too
    await send(page, "and now?")
    await page.locator(".msg:not(.me)", has_text="Streaming answer to: and now?").wait_for(timeout=8000)
    texts = [m.text for m in server.transcript(group_id) if not m.from_bot]
    assert texts == ["just chatting", "@omni_test_bot are you there?", "and now?"]
    assert [m.text for m in server.bot_messages(user_id)] == []  # nothing went to the private chat
    await page.uncheck("#group")
    await page.locator("#menu button", has_text="/start").wait_for(timeout=5000)
    assert await page.locator(".msg").count() == 0
    assert page.errors == []

"""The playground page in a real headless Chromium, chatting with an aiogram bot through the local server.

The bot here is a small stand-in written with aiogram (the real bot's browser run belongs to the demo
tests): it shows "typing", streams an answer by edits, formats with HTML and downloads photos.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command
from aiogram.types import BotCommand, Message

from tests.local_api_helpers import make_bot, png

pytest_plugins = ("tests.local_api_fixtures",)  # server
async_playwright = pytest.importorskip("playwright.async_api").async_playwright
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)"),
]


def stand_in_router() -> Router:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer(
            "<b>Hello!</b> <tg-spoiler>secret</tg-spoiler> &lt;script&gt;alert(1)&lt;/script&gt; Try /help",
            parse_mode="HTML",
        )

    @router.message(F.photo)
    async def photo(message: Message, bot: Bot) -> None:
        data = await bot.download(message.photo[-1].file_id)
        await message.reply(f"Got {len(data.getvalue())} bytes, caption: {message.caption}")

    @router.message(F.text)
    async def stream(message: Message, bot: Bot) -> None:
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
    dispatcher = Dispatcher()
    dispatcher.include_router(stand_in_router())
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1))
    yield bot
    await dispatcher.stop_polling()
    await polling
    await bot.session.close()


async def test_playground_chat_in_chromium(server, running_bot, tmp_path):
    photo_bytes = png(640, 480, "teal")
    (tmp_path / "cat.png").write_bytes(photo_bytes)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{server.base_url}/")

            # the bot's command menu, clickable
            await page.locator("#menu button", has_text="/new").wait_for(timeout=5000)
            await page.locator("#menu button", has_text="/start").click()
            reply = page.locator(".msg:not(.me)", has_text="Hello!")
            await reply.wait_for(timeout=5000)
            assert await reply.locator("b").inner_text() == "Hello!"
            assert await reply.locator(".spoiler").inner_text() == "secret"
            assert "<script>alert(1)</script>" in await reply.inner_text()  # shown as text, never run
            assert await page.locator(".msg script").count() == 0
            assert await reply.locator("a.cmd", has_text="/help").count() == 1

            # "typing…", then an answer growing by edits
            await page.fill("#text", "what is up")
            await page.click("form button[type=submit]")
            await page.locator("#typing", has_text="typing").wait_for(timeout=5000)
            answer = page.locator(".msg:not(.me)", has_text="Streaming answer to: what is up")
            await answer.wait_for(timeout=8000)
            assert "edited" in await answer.locator(".meta").inner_text()

            # a photo with a caption reaches the bot byte for byte
            await page.set_input_files("#photo", str(tmp_path / "cat.png"))
            await page.fill("#text", "my cat")
            await page.click("form button[type=submit]")
            await page.locator(".msg", has_text=f"Got {len(photo_bytes)} bytes, caption: my cat").wait_for(
                timeout=8000
            )
            assert await page.locator(".msg.me img").count() == 1
            await page.screenshot(path=str(tmp_path / "playground.png"))

            # another tab is another Telegram user, with a chat of its own
            other = await (await browser.new_context()).new_page()
            await other.goto(f"{server.base_url}/")
            await other.locator("#status", has_text="online").wait_for(timeout=5000)
            first_id, second_id = await page.inner_text("#whoami"), await other.inner_text("#whoami")
            assert first_id != second_id and await other.locator(".msg").count() == 0
            assert errors == []
        finally:
            await browser.close()
    assert (tmp_path / "playground.png").stat().st_size > 10_000
    assert len(server.users) == 2

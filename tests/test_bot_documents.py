"""Documents users send, through the real Dispatcher and the local Bot API, with real Redis and a scripted
worker: their text goes into the turn with the file name, bounded in pages, characters and time; the PDFs
that cannot be read each get their own clear message. The PDFs are made here (tests/pdf_factory.py)."""

from __future__ import annotations

from bot import keys
from tests.bot_harness import BotUnderTest, ScriptedWorker
from tests.pdf_factory import scanned_pdf, text_pdf

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness, scripted

PDF = "application/pdf"


async def send(harness, telegram, user_id, data, name, mime_type=None, caption=None) -> list[str]:
    """The user sends a document; returns the bot's messages after it once the answer (if any) is done."""
    sent = await telegram.send_document(user_id, data, file_name=name, mime_type=mime_type, caption=caption)
    await harness.pump()
    await harness.finish_answers()
    return [m.text for m in telegram.bot_messages(user_id) if m.message_id > sent.message_id]


def asked(job) -> str:
    return job.messages[-1]["content"][-1]["text"]


async def test_a_text_pdf_goes_into_the_turn_with_its_name_and_the_question(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    data = text_pdf([["Quarterly report", "Revenue grew by 12 percent."], ["Costs fell by 3 percent."]])
    replies = await send(harness, telegram, user.id, data, "report.pdf", PDF, caption="What grew?")
    assert replies == ["Hello there."]  # no note: nothing was left out
    [job] = scripted.jobs
    text = asked(job)
    assert text.startswith("File report.pdf:\n")
    assert "Revenue grew by 12 percent." in text and "Costs fell by 3 percent." in text
    assert text.endswith("\n\nWhat grew?")
    assert len(await harness.dialogs.messages(user.id, user.id)) == 2  # the document is part of the dialog


async def test_a_scanned_pdf_is_told_it_has_no_text_layer(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    [reply] = await send(harness, telegram, user.id, scanned_pdf(3), "scan.pdf", PDF)
    assert reply.startswith("The PDF scan.pdf has no text layer (it looks scanned).")
    assert scripted.jobs == []
    assert await harness.redis.zcard(keys.rate_log(user.id)) == 0  # refunded: it does not count
    assert await harness.access.inflight(user.id) is None


async def test_an_encrypted_pdf_is_told_it_is_password_protected(harness, telegram, scripted):
    user = await telegram.create_user(language_code="ru")
    data = text_pdf([["top secret"]], password="hunter2")
    [reply] = await send(harness, telegram, user.id, data, "secret.pdf", PDF)
    assert reply == "PDF secret.pdf защищён паролем. Пришлите копию без пароля."
    assert scripted.jobs == []


async def test_a_200_page_pdf_is_read_within_bounds_and_says_what_was_left_out(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    pages = [[f"Page {n}: a short page."] for n in range(200)]  # short pages: the page bound is the one hit
    replies = await send(harness, telegram, user.id, text_pdf(pages), "book.pdf", PDF, caption="Summary?")
    max_pages = harness.settings.document_max_pages
    [note] = [r for r in replies if r.startswith("📄")]
    assert note.startswith(f"📄 book.pdf has 200 pages: I read the first {max_pages}")
    assert replies[-1] == "Hello there."
    [job] = scripted.jobs
    text = asked(job)
    assert text.startswith(f"File book.pdf (pages 1-{max_pages} of 200, shortened):")
    assert "Page 0: a" in text and f"Page {max_pages - 1}: a" in text and f"Page {max_pages}: a" not in text
    assert len(text) <= harness.settings.text_limit  # the turn fits the model's context


async def test_a_long_pdf_is_cut_at_the_characters_the_turn_has_room_for(telegram, redis_url):
    bot = BotUnderTest(telegram, redis_url, max_text_chars=1500)
    try:
        async with ScriptedWorker(redis_url) as worker:
            user = await telegram.create_user(language_code="en")
            pages = [[f"Line {i} of a long page, with words enough to fill it." for i in range(40)]] * 5
            replies = await send(bot, telegram, user.id, text_pdf(pages), "long.pdf", PDF)
            notes = [r for r in replies if r.startswith("📄")]
            assert len(notes) == 1 and "I read the first" in notes[0], replies
            text = asked(worker.jobs[0])
            assert len(text) <= 1500 and text.endswith("Summarize this document.")  # no caption: a summary
    finally:
        await bot.stop()


async def test_a_source_file_goes_into_the_turn_as_text(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    code = 'def greet(name: str) -> str:\n    return f"Привет, {name}!"\n'
    # sent without a MIME type, as a browser often does: the name says what it is
    replies = await send(harness, telegram, user.id, code.encode(), "greet.py", caption="Any bugs?")
    assert replies == ["Hello there."]
    assert asked(scripted.jobs[0]) == f"File greet.py:\n{code}\n\nAny bugs?"


async def test_csv_and_markdown_in_windows_1251_are_read(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await send(harness, telegram, user.id, "город;население\nМосква;13\n".encode("cp1251"), "cities.csv")
    assert "Москва;13" in asked(scripted.jobs[0])
    assert asked(scripted.jobs[0]).startswith("File cities.csv:")


async def test_documents_we_do_not_read_and_binary_text_files_are_refused(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    [reply] = await send(harness, telegram, user.id, b"\x00\x01binary\x00", "data.txt", "text/plain")
    assert reply.startswith("I read pictures (JPEG, PNG, WebP, GIF), PDFs and text files")
    [reply] = await send(harness, telegram, user.id, b"   \n", "empty.md")
    assert reply == "The file empty.md has no text in it."
    sent = await telegram.send_document(user.id, b"x", file_name="huge.pdf", mime_type=PDF, file_size=25 * 2**20)
    await harness.pump()
    [reply] = [m.text for m in telegram.bot_messages(user.id) if m.message_id > sent.message_id]
    assert reply == "This file is too large (25.0 MB). Please send one under 20 MB."
    assert scripted.jobs == [] and telegram.calls["getFile"] == 2  # the huge one was not even downloaded


async def test_a_pdf_that_takes_too_long_is_given_up_with_a_message(telegram, redis_url):
    bot = BotUnderTest(telegram, redis_url, document_timeout_s=0.05)  # less than starting the reader takes
    try:
        async with ScriptedWorker(redis_url) as worker:
            user = await telegram.create_user(language_code="en")
            [reply] = await send(bot, telegram, user.id, text_pdf([["slow"]]), "slow.pdf", PDF)
            assert reply == "Reading slow.pdf took longer than 0.05 s, so I gave up. Please send a smaller file."
            assert worker.jobs == [] and await bot.access.inflight(user.id) is None
    finally:
        await bot.stop()

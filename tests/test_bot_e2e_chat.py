"""End to end, the Telegram-native parts: the real bot (polling) -> local Bot API over HTTP -> Redis -> the
real `python -m model.worker` on the tiny preset -> back. Drafts and their stop button, the buttons under
answers, a waiting turn, a PDF, /forget. Answers are noise (random weights): structure is checked, never
wording."""

from __future__ import annotations

import pytest

from bot import keys
from tests.bot_harness import png, wait_until
from tests.pdf_factory import text_pdf
from tests.test_bot_chat import buttons
from tests.test_bot_e2e import _jobs, answered, new_user, running_bot, streaming, wire, worker
from tests.test_bot_settings import everything_about

pytest_plugins = ["tests.bot_fixtures"]
pytestmark = pytest.mark.slow
__all__ = ["worker"]  # module-scoped fixtures: one worker for this module


async def test_a_draft_streams_and_its_stop_button_stops_the_worker(telegram, module_redis_url, worker):
    bot = await running_bot(telegram, module_redis_url, max_new_tokens=1000)
    try:
        user = await new_user(telegram)
        for attempt in range(5):  # the random model sometimes ends on its own before the stop lands
            asked = await telegram.send_text(user.id, f"A very long story {attempt}")
            await telegram.wait_for(lambda: len(getattr(telegram.draft(user.id), "text", "")) > 3, 30)
            assert telegram.draft(user.id).can_stop
            await telegram.stop_draft(user.id)
            await answered(bot, user.id, asked.message_id)
            job = next(j for j in await _jobs(bot) if j.messages[-1]["content"][-1]["text"].endswith(str(attempt)))
            _, _, events = await wire(bot.redis, job.id)
            if events[-1]["finish"] == "cancelled":
                break
        assert events[-1]["event"] == "done" and events[-1]["finish"] == "cancelled"
        [answer] = [m for m in telegram.bot_messages(user.id) if m.message_id > asked.message_id]
        assert answer.text.endswith("⏹ Stopped.") and answer.edit_count == 0  # one message, never edited
        assert list(buttons(answer)) == ["🔄 Regenerate", "✨ New dialog"]
    finally:
        await bot.stop()


async def test_regenerate_asks_the_worker_again_and_marks_the_old_answer(telegram, module_redis_url, worker):
    bot = await running_bot(telegram, module_redis_url)
    try:
        user = await new_user(telegram)
        photo = await telegram.send_photo(user.id, png(), caption="What is here?")
        await answered(bot, user.id, photo.message_id)
        [first] = telegram.bot_messages(user.id)
        await telegram.press_button(user.id, first.message_id, buttons(first)["🔄 Regenerate"])
        await answered(bot, user.id, first.message_id)  # the new answer is the next message
        first, second = telegram.bot_messages(user.id)
        assert second.data["reply_to_message"]["message_id"] == photo.message_id
        assert list(buttons(first)) == ["↩️ Replaced by a newer answer"]
        jobs = await _jobs(bot)
        assert len(jobs) >= 2 and jobs[-1].messages == jobs[-2].messages  # the same question, asked again
        assert len(await bot.dialogs.messages(user.id, user.id)) == 2
        assert all(a is not None for a in telegram.bot().callback_answers.values())
    finally:
        await bot.stop()


async def test_a_message_written_meanwhile_is_answered_next(telegram, module_redis_url, worker):
    bot = await running_bot(telegram, module_redis_url, max_new_tokens=200)
    try:
        user = await new_user(telegram)
        first = await telegram.send_text(user.id, "first question")
        await telegram.wait_for(lambda: streaming(telegram, user.id, first.message_id), 30)
        second = await telegram.send_text(user.id, "second question")

        async def both_answered() -> bool:  # after it: the notice, the first answer, the second answer
            later = [m for m in telegram.bot_messages(user.id) if m.message_id > second.message_id]
            return len(later) >= 3 and await bot.access.inflight(user.id) is None

        await wait_until(both_answered, 90, "both answers")
        notice = next(m for m in telegram.bot_messages(user.id) if m.message_id > second.message_id)
        assert notice.text.startswith("📝")
        asked = [j.messages[-1]["content"][-1]["text"] for j in await _jobs(bot)]
        assert asked[-2:] == ["first question", "second question"]
        assert len(await bot.dialogs.messages(user.id, user.id)) == 4
    finally:
        await bot.stop()


async def test_a_pdf_reaches_the_worker_and_is_answered(telegram, module_redis_url, worker):
    bot = await running_bot(telegram, module_redis_url)
    try:
        user = await new_user(telegram)
        data = text_pdf([["The launch is on Tuesday."], ["Bring the blue folder."]])
        sent = await telegram.send_document(user.id, data, file_name="plan.pdf", mime_type="application/pdf",
                                            caption="When is the launch?")
        await answered(bot, user.id, sent.message_id)
        job = (await _jobs(bot))[-1]
        text = job.messages[-1]["content"][-1]["text"]
        assert text.startswith("File plan.pdf:") and "The launch is on Tuesday." in text
        _, final, events = await wire(bot.redis, job.id)
        assert events[-1]["event"] == "done"
    finally:
        await bot.stop()


async def test_forget_leaves_nothing_of_the_user(telegram, module_redis_url, worker):
    bot = await running_bot(telegram, module_redis_url)
    try:
        user = await new_user(telegram)
        secret = "a question nobody else asks"
        photo = await telegram.send_photo(user.id, png(color=(1, 2, 3)), caption=secret)
        await answered(bot, user.id, photo.message_id)
        await bot.preferences.choose(user.id, "creativity", "creative")
        asked = await telegram.send_text(user.id, "/forget")
        question = await telegram.wait_for_bot_message(user.id, after=asked.message_id, timeout=30)
        await telegram.press_button(user.id, question.message_id, buttons(question)["🗑 Yes, delete"])
        await telegram.wait_for(
            lambda: next(m for m in telegram.transcript(user.id) if m.message_id == question.message_id)
            .text.startswith("Done"), 30)
        left = await everything_about(bot.redis, user.id, [secret])
        assert left == [keys.rate_log(user.id)]
    finally:
        await bot.stop()

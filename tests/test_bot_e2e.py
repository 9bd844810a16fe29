"""End to end: the real bot (polling) -> local Bot API over HTTP -> Redis -> the real `python -m model.worker`
on the tiny preset -> back. The tiny model's weights are random, so answers are noise: the tests check
structure (an answer arrives, what was streamed is what was answered, limits hold), never wording.

One worker serves the whole module (it takes seconds to start); each test has its own users."""

from __future__ import annotations

import itertools
import re

import pytest
from redis.asyncio import Redis

from bot.formatting import clean, has_visible_text, split_markdown, to_html, utf16_len
from local_bot_api.formatting import format_text
from model import protocol
from tests.bot_harness import ADMIN_ID, BotUnderTest, RealWorker, png, wait_until

pytest_plugins = ["tests.bot_fixtures"]
pytestmark = pytest.mark.slow

_user_ids = itertools.count(810_000_001)


@pytest.fixture(scope="module")
def worker(module_redis_url, tmp_path_factory):
    real = RealWorker(module_redis_url, tmp_path_factory.mktemp("worker") / "worker.log").start()
    yield real
    real.stop()


async def running_bot(telegram, redis_url, **settings) -> BotUnderTest:
    bot = BotUnderTest(telegram, redis_url, max_new_tokens=settings.pop("max_new_tokens", 40), **settings)

    async def keep_reply_stream(job_id: str) -> None:  # the test reads the wire after the answer
        return None

    bot.queue.forget = keep_reply_stream
    await bot.start_polling()
    return bot


@pytest.fixture
async def bot(telegram, module_redis_url, worker):
    running = await running_bot(telegram, module_redis_url)
    yield running
    await running.stop()


async def new_user(telegram, language_code: str = "en"):
    return await telegram.create_user(user_id=next(_user_ids), language_code=language_code)


async def answered(bot, user_id: int, after: int, within_s: float = 60.0) -> None:
    """Until the answer to message #after is delivered: the bot has replied (the placeholder comes after
    admission) and the user's in-flight record is gone."""

    async def done() -> bool:
        replied = any(m.message_id > after for m in bot.server.bot_messages(user_id))
        return replied and await bot.access.inflight(user_id) is None

    await wait_until(done, within_s, f"the answer to message {after}")


async def wire(redis: Redis, job_id: str) -> tuple[str, str, list[dict]]:
    """(what the deltas add up to, the final event's text, all events) of a job's reply stream."""
    events = [protocol.decode_event(f) for _, f in await redis.xrange(protocol.reply_key(job_id))]
    streamed = ""
    for event in events:
        streamed = (
            ""
            if event["event"] == "restart"
            else streamed + event.get("text", "") * (event["event"] == "delta")
        )
    return streamed, events[-1].get("text", ""), events


def shown(telegram, chat_id: int, after: int) -> str:
    return "\n".join(m.text for m in telegram.bot_messages(chat_id) if m.message_id > after)


def streaming(telegram, chat_id: int, after: int) -> str:
    """What the user sees of the answer being written: a private chat's draft, else the messages."""
    draft = telegram.draft(chat_id)
    return draft.text if draft is not None else shown(telegram, chat_id, after)


def visible(markdown: str) -> str:
    """What the user should see for a final answer `markdown`."""
    if not has_visible_text(clean(markdown)):
        return "(the model returned an empty answer)"
    return format_text(to_html(clean(markdown).strip()), "HTML")[0]


def squash(text: str) -> str:
    return " ".join(text.split())


async def test_several_users_at_once_with_photos_and_follow_ups(bot, telegram):
    users = [await new_user(telegram, lang) for lang in ("en", "ru", "en")]
    asked = {
        u.id: await telegram.send_photo(u.id, png(color=(40 * i, 90, 200)), caption=f"What is this, {i}?")
        for i, u in enumerate(users)
    }
    for user in users:
        await answered(bot, user.id, asked[user.id].message_id)
    for i, user in enumerate(users):
        dialog = await bot.dialogs.messages(user.id, user.id)
        assert [m["role"] for m in dialog] == ["user", "assistant"]
        assert dialog[0]["content"][-1]["text"] == f"What is this, {i}?"  # each user's own question only
        jobs = [j for j in await _jobs(bot) if j.messages[-1]["content"][-1]["text"] == f"What is this, {i}?"]
        streamed, final, events = await wire(bot.redis, jobs[0].id)
        assert events[-1]["event"] == "done" and streamed == final == dialog[1]["content"][0]["text"]
        assert squash(shown(telegram, user.id, asked[user.id].message_id)) == squash(visible(final))

    follow = {u.id: await telegram.send_text(u.id, "And what colour is it?") for u in users}
    for user in users:
        await answered(bot, user.id, follow[user.id].message_id)
        job = [
            j
            for j in await _jobs(bot)
            if j.messages[0]["content"][-1]["text"].endswith(f"{users.index(user)}?") and len(j.messages) == 3
        ][0]
        assert job.messages[0]["content"][0]["type"] == "image"  # the earlier photo is still there
        assert shown(telegram, user.id, follow[user.id].message_id)


async def _jobs(bot) -> list[protocol.Job]:
    return [protocol.parse_job(f[b"job"]) for _, f in await bot.redis.xrange(protocol.JOBS_STREAM)]


async def test_flood_control_while_streaming(bot, telegram):
    user = await new_user(telegram)
    asked = await telegram.send_text(user.id, "Tell me something long")
    await telegram.wait_for(lambda: streaming(telegram, user.id, asked.message_id), 20)
    telegram.inject_retry_after(retry_after=2, seconds=2)
    await answered(bot, user.id, asked.message_id)
    record = (await _jobs(bot))[-1]
    _, final, _ = await wire(bot.redis, record.id)
    assert squash(shown(telegram, user.id, asked.message_id)) == squash(visible(final))
    calls = [r for r in telegram.call_log if r.chat_id == user.id and r.method.lower() != "sendchataction"]
    refused = [r.at for r in calls if r.status == 429]
    if refused:  # the answer may have been complete before the window opened
        assert not [r for r in calls if refused[0] < r.at < refused[0] + 1.9]


async def test_admin_and_non_admin(bot, telegram):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    user = await new_user(telegram)
    sent = await telegram.send_text(user.id, f"/setlimit {user.id} 100/day")
    reply = await telegram.wait_for_bot_message(user.id, after=sent.message_id, timeout=10)
    assert reply.text == "This command is for the bot's administrators."
    assert (await bot.access.effective_limit(user.id))[1] == "env"
    sent = await telegram.send_text(admin.id, f"/setlimit {user.id} 1/hour")
    assert "1/hour" in (await telegram.wait_for_bot_message(admin.id, after=sent.message_id, timeout=10)).text
    first = await telegram.send_text(user.id, "first question")
    await answered(bot, user.id, first.message_id)
    sent = await telegram.send_text(user.id, "second question")
    refusal = await telegram.wait_for_bot_message(user.id, after=sent.message_id, timeout=10)
    assert re.fullmatch(
        r"You have reached your limit of 1/hour\. You can write again in (60 min|1 h)\.", refusal.text
    )


async def test_cancel_really_stops_the_worker(telegram, module_redis_url, worker):
    # The random model sometimes ends on its own before /cancel lands; then the attempt is repeated.
    bot = await running_bot(telegram, module_redis_url, max_new_tokens=1000)
    try:
        user = await new_user(telegram)
        for attempt in range(5):
            asked = await telegram.send_text(user.id, f"Write a very long story {attempt}")
            await telegram.wait_for(
                lambda after=asked.message_id: len(streaming(telegram, user.id, after)) > 3, 30
            )
            await telegram.send_text(user.id, "/cancel")
            await answered(bot, user.id, asked.message_id)
            _, _, events = await wire(bot.redis, await _job_asking(bot, f"Write a very long story {attempt}"))
            if events[-1]["finish"] == "cancelled":
                break
        assert events[-1]["event"] == "done" and events[-1]["finish"] == "cancelled"  # the worker stopped
        assert events[-1]["tokens"] < 1000
        assert shown(telegram, user.id, asked.message_id).endswith("⏹ Stopped.")
        assert len(await bot.dialogs.messages(user.id, user.id)) == 2 * attempt  # the stopped one is not kept
    finally:
        await bot.stop()


async def test_long_answers_continue_in_more_messages(telegram, module_redis_url, worker):
    # A random-weight model stops at random: with 5 answers of up to 400 tokens and 100-character messages,
    # at least one spans several messages (measured: 2 in 12 answers stay under 100 characters).
    bot = await running_bot(telegram, module_redis_url, max_new_tokens=400, message_max_chars=100)
    try:
        users = [await new_user(telegram) for _ in range(5)]
        asked = {u.id: await telegram.send_text(u.id, f"Explain everything, {u.id}") for u in users}
        most_messages = 0
        for user in users:
            await answered(bot, user.id, asked[user.id].message_id)
            _, final, _ = await wire(bot.redis, await _job_asking(bot, f"Explain everything, {user.id}"))
            messages = [m for m in telegram.bot_messages(user.id) if m.message_id > asked[user.id].message_id]
            assert all(utf16_len(m.text) <= 100 for m in messages)  # never "message is too long"
            # nothing lost: each piece as the splitter cut it (a cut may fall inside a word or a `code` span)
            pieces = [visible(p) for p in split_markdown(clean(final).strip(), 100) if has_visible_text(p)]
            assert [squash(m.text) for m in messages] == [squash(p) for p in pieces or [visible("")]]
            most_messages = max(most_messages, len(messages))
        assert most_messages >= 2
    finally:
        await bot.stop()


async def _job_asking(bot, question: str) -> str:
    return next(j.id for j in await _jobs(bot) if j.messages[-1]["content"][-1]["text"] == question)


async def test_bot_restart_mid_dialog_and_mid_answer(telegram, module_redis_url, worker):
    first = await running_bot(telegram, module_redis_url, max_new_tokens=600)  # long enough to stop mid-answer
    user = await new_user(telegram)
    photo = await telegram.send_photo(user.id, png(), caption="What is here?")
    await answered(first, user.id, photo.message_id)
    asked = await telegram.send_text(user.id, "Tell me more about it")
    await telegram.wait_for(
        lambda: streaming(telegram, user.id, asked.message_id) not in ("", "⏳ Thinking…"), 30
    )
    assert await first.access.inflight(user.id) is not None
    await first.stop()  # SIGTERM-like, with the answer in flight

    second = await running_bot(telegram, module_redis_url)  # resumes the answer in the same message
    try:
        await answered(second, user.id, asked.message_id)
        job = (await _jobs(second))[-1]
        assert [m["role"] for m in job.messages] == ["user", "assistant", "user"]
        assert job.messages[0]["content"][0]["type"] == "image"  # the dialog survived the restart
        _, final, _ = await wire(second.redis, job.id)
        replies = [m for m in telegram.bot_messages(user.id) if m.message_id > asked.message_id]
        assert len(replies) == 1  # one placeholder, finished by the second bot
        assert squash(replies[0].text) == squash(visible(final))
        assert len(await second.dialogs.messages(user.id, user.id)) == 4
    finally:
        await second.stop()

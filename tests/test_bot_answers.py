"""How answers reach the user: streaming edits, long answers, flood control, worker errors, cancel, retry,
offline workers, blocked users. The worker here is a scripted stand-in speaking the wire protocol."""

from __future__ import annotations

import asyncio
import itertools

from bot.formatting import TELEGRAM_TEXT_LIMIT, to_html, utf16_len
from bot.services import delivery as delivery_module
from local_bot_api.formatting import format_text
from model import protocol
from tests.bot_harness import BotUnderTest, ScriptedWorker, png

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness, edits_harness, scripted


def stream(*pieces: str, pause: float = 0.0, finish: str = "stop") -> list[dict]:
    events: list[dict] = []
    for piece in pieces:
        events.append(protocol.delta_event(piece))
        if pause:
            events.append({"sleep": pause})
    return [*events, protocol.done_event("".join(pieces), finish, len(pieces))]


async def ask(harness, telegram, user_id, text="question"):
    sent = await telegram.send_text(user_id, text)
    await harness.pump()
    return sent


async def test_answer_grows_by_throttled_edits(edits_harness, telegram, redis_url):
    pieces = [f"word{i} " for i in range(30)]
    async with ScriptedWorker(redis_url, lambda job: stream(*pieces, pause=0.1)):
        user = await telegram.create_user(language_code="en")
        await ask(edits_harness, telegram, user.id)
        await edits_harness.finish_answers()
    [answer] = telegram.bot_messages(user.id)
    assert answer.text == "".join(pieces).strip()
    assert answer.edit_count >= 2  # it grew while being written
    shown = [h["text"] for h in answer.history[1:]] + [answer.text]
    assert all(
        shown[i + 1].startswith(shown[i].strip()) for i in range(len(shown) - 1) if shown[i] != "⏳ Thinking…"
    )
    assert telegram.max_rate(user.id, window=1.0) <= 2  # about one edit a second in a private chat


async def test_long_answer_continues_in_more_messages(harness, telegram, redis_url):
    code = "\n".join(f"    total += item_{i}  # keep going" for i in range(250))
    prose = " ".join(f"Sentence number {i} explains a detail." for i in range(250))
    answer_text = f"{prose}\n\n```python\n{code}\n```\n\n{prose}"
    assert len(answer_text) > 3 * TELEGRAM_TEXT_LIMIT
    async with ScriptedWorker(
        redis_url,
        lambda job: stream(
            *[answer_text[i : i + 2000] for i in range(0, len(answer_text), 2000)], pause=0.05
        ),
    ):
        user = await telegram.create_user(language_code="en")
        await ask(harness, telegram, user.id)
        await harness.finish_answers()
    messages = telegram.bot_messages(user.id)
    assert len(messages) >= 4
    assert all(utf16_len(m.text) <= TELEGRAM_TEXT_LIMIT for m in messages)
    expected, _ = format_text(to_html(answer_text), "HTML")
    assert " ".join("\n".join(m.text for m in messages).split()) == " ".join(expected.split())
    assert any(e["type"] == "pre" for m in messages for e in m.entities)  # the code block stays code


async def test_flood_control_is_honoured_and_the_answer_still_arrives(edits_harness, telegram, redis_url):
    async with ScriptedWorker(redis_url, lambda job: stream(*[f"part{i} " for i in range(20)], pause=0.1)):
        user = await telegram.create_user(language_code="en")
        await ask(edits_harness, telegram, user.id)
        await telegram.wait_for(lambda: "part" in (telegram.bot_messages(user.id)[0].text or ""), 10)
        telegram.inject_retry_after(retry_after=2, seconds=2)  # every call for 2 s answers 429
        await edits_harness.finish_answers()
    [answer] = telegram.bot_messages(user.id)
    assert answer.text == "".join(f"part{i} " for i in range(20)).strip()
    calls = [r for r in telegram.call_log if r.chat_id == user.id and r.method.lower() != "sendchataction"]
    first_429 = next(r.at for r in calls if r.status == 429)
    during_wait = [r for r in calls if first_429 < r.at < first_429 + 1.9]
    assert during_wait == []  # the chat was left alone for retry_after: no 429 storm
    assert edits_harness.metrics.telegram_retry_after._value.get() >= 1


async def test_after_a_429_one_call_waits_and_the_others_queue_behind_it(harness, telegram):
    """Six notes to one chat at once, against a Telegram that allows no burst at all (the bot's pace allows 3):
    the second gets a 429, and the rest must not all retry together when it ends (a 429 storm), but follow
    one by one at the chat's pace (1/s, a little under what this Telegram refills)."""
    user = await telegram.create_user(language_code="en")
    telegram.set_rate_limits(enabled=True, private_burst=1, private_per_second=1.25)
    await telegram.send_text(user.id, "/start")  # the private chat exists once the user wrote
    await harness.pump()
    await asyncio.sleep(3.0)  # the chat's pace is back to a full burst, on both sides
    mark = len(telegram.call_log)
    await asyncio.gather(*(harness.outbox.send(user.id, f"note {i}") for i in range(6)))
    texts = [m.text for m in telegram.bot_messages(user.id)]
    assert sorted(texts[-6:]) == [f"note {i}" for i in range(6)]  # every one delivered
    refused = [r for r in itertools.islice(telegram.call_log, mark, None) if r.status == 429]
    assert len(refused) == 1


async def test_command_reply_waits_out_a_429(harness, telegram):
    user = await telegram.create_user(language_code="en")
    telegram.inject_retry_after(retry_after=1, count=1, method="sendMessage")
    sent = await ask(harness, telegram, user.id, "/help")
    [reply] = [m for m in telegram.bot_messages(user.id) if m.message_id > sent.message_id]
    assert "How to talk to me" in reply.text


async def test_worker_errors_become_human_messages(harness, telegram, redis_url):
    traceback = "Traceback (most recent call last): RuntimeError: CUDA out of memory"
    codes = iter(["image_missing", "internal", "expired", "mystery_code"])
    async with ScriptedWorker(
        redis_url,
        lambda job: [
            protocol.delta_event("partial"),
            {"event": "error", "code": next(codes), "message": traceback},
        ],
    ):
        user = await telegram.create_user(language_code="en")
        for _ in range(4):
            await ask(harness, telegram, user.id)
            await harness.finish_answers()
    texts = [m.text for m in telegram.bot_messages(user.id)]
    assert texts[0].startswith("⚠️ A picture from earlier in our dialog has expired")
    assert texts[1].startswith("⚠️ The model failed while answering")
    assert texts[2].startswith("⚠️ Too many people were ahead of you")
    assert "(mystery_code)" in texts[3]
    assert not any("Traceback" in t or "CUDA" in t for t in texts)
    assert await harness.dialogs.messages(user.id, user.id) == []  # failed exchanges are not remembered


async def test_answer_with_nothing_visible_is_never_sent_empty(harness, telegram, redis_url):
    async with ScriptedWorker(redis_url, lambda job: stream(" ", "\x02", "\n```", "\n```", pause=0.3)):
        user = await telegram.create_user(language_code="en")
        await ask(harness, telegram, user.id)
        await harness.finish_answers()
    [answer] = telegram.bot_messages(user.id)  # Telegram refuses empty text: it must never be tried
    assert answer.text == "(the model returned an empty answer)"
    assert not [r for r in telegram.call_log if r.status == 400]


async def test_restart_event_drops_what_was_streamed(harness, telegram, redis_url):
    events = [
        protocol.delta_event("first attempt that dies"),
        {"sleep": 1.2},
        protocol.restart_event(),
        protocol.delta_event("Second "),
        protocol.delta_event("try."),
        protocol.done_event("Second try.", "stop", 2),
    ]
    async with ScriptedWorker(redis_url, lambda job: events):
        user = await telegram.create_user(language_code="en")
        await ask(harness, telegram, user.id)
        await harness.finish_answers()
    [answer] = telegram.bot_messages(user.id)
    assert answer.text == "Second try."
    assert (await harness.dialogs.messages(user.id, user.id))[1]["content"][0]["text"] == "Second try."


async def test_cancel_stops_the_answer_and_retry_asks_again(edits_harness, telegram, redis_url):
    slow = stream(*[f"w{i} " for i in range(100)], pause=0.05)
    async with ScriptedWorker(redis_url, lambda job: slow) as worker:
        user = await telegram.create_user(language_code="en")
        await ask(edits_harness, telegram, user.id, "tell me a long story")
        await telegram.wait_for(lambda: "w3" in (telegram.bot_messages(user.id)[0].text or ""), 10)
        await ask(edits_harness, telegram, user.id, "/cancel")
        await edits_harness.finish_answers()
        [answer] = telegram.bot_messages(user.id)
        assert answer.text.endswith("⏹ Stopped.") and "w99" not in answer.text
        assert await edits_harness.dialogs.messages(user.id, user.id) == []  # a stopped answer is not context
        assert await edits_harness.redis.exists(protocol.cancel_key(worker.jobs[0].id))

        worker.script = lambda job: stream("Short ", "story.")
        await ask(edits_harness, telegram, user.id, "/retry")
        await edits_harness.finish_answers()
        assert worker.jobs[1].messages[-1] == worker.jobs[0].messages[-1]
        await ask(edits_harness, telegram, user.id, "/retry")
        await edits_harness.finish_answers()
        assert len(await edits_harness.dialogs.messages(user.id, user.id)) == 2  # replaced, not appended


async def test_offline_model_keeps_the_turn_and_answers_when_a_worker_comes(edits_harness, telegram, redis_url):
    user = await telegram.create_user(language_code="en")
    await ask(edits_harness, telegram, user.id)
    await telegram.wait_for(lambda: "offline" in telegram.bot_messages(user.id)[0].text, 10)
    assert "until" in telegram.bot_messages(user.id)[0].text
    async with ScriptedWorker(redis_url):
        await edits_harness.finish_answers()
    assert telegram.bot_messages(user.id)[0].text == "Hello there."


async def test_turn_expires_when_no_worker_comes(harness, telegram, monkeypatch):
    monkeypatch.setattr(delivery_module, "DEADLINE_GRACE_S", 0.0)
    harness.turns.settings = harness.settings.model_copy(update={"job_timeout_s": 1.0})
    user = await telegram.create_user(language_code="en")
    await ask(harness, telegram, user.id)
    await harness.finish_answers()
    assert "stayed offline" in telegram.bot_messages(user.id)[0].text
    assert await harness.redis.xlen(protocol.JOBS_STREAM) == 0  # withdrawn: a late worker will not run it
    assert await harness.access.inflight(user.id) is None


async def test_queue_position_is_shown_and_updated(edits_harness, telegram, redis_url):
    await edits_harness.redis.set(protocol.heartbeat_key("busy"), 1, ex=60)  # alive, but not taking jobs yet
    users = [await telegram.create_user(language_code="en") for _ in range(3)]
    for user in users:
        await ask(edits_harness, telegram, user.id)
    last = users[-1].id
    await telegram.wait_for(
        lambda: telegram.bot_messages(last)[0].text == "⏳ In the queue: 2 ahead of you.", 10
    )
    async with ScriptedWorker(redis_url):
        await edits_harness.finish_answers()
    assert all(telegram.bot_messages(u.id)[0].text == "Hello there." for u in users)


async def test_user_who_blocked_the_bot_breaks_nothing(edits_harness, telegram, redis_url):
    async with ScriptedWorker(
        redis_url, lambda job: stream(*[f"x{i} " for i in range(60)], pause=0.05)
    ) as worker:
        gone = await telegram.create_user(language_code="en")
        other = await telegram.create_user(language_code="en")
        await ask(edits_harness, telegram, gone.id)
        await telegram.wait_for(lambda: "x2" in (telegram.bot_messages(gone.id)[0].text or ""), 10)
        await telegram.block(gone.id)
        await ask(edits_harness, telegram, other.id)
        await edits_harness.finish_answers()
        assert await edits_harness.redis.exists(
            protocol.cancel_key(worker.jobs[0].id)
        )  # the worker is told to stop
    assert telegram.bot_messages(other.id)[0].text.startswith("x0 x1")
    assert await edits_harness.access.inflight(gone.id) is None


async def test_refused_html_falls_back_to_plain_text(harness, telegram, monkeypatch):
    from bot.services import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "to_html", lambda text: "<b>broken")
    user = await telegram.create_user(language_code="en")
    await telegram.send_text(user.id, "hi")  # the private chat must exist
    message_id = await harness.outbox.send(user.id, "**still** readable", markdown=True)
    assert [m.text for m in telegram.bot_messages(user.id) if m.message_id == message_id] == [
        "**still** readable"
    ]


async def test_bot_restart_mid_answer_resumes_the_same_message(telegram, redis_url):
    first = BotUnderTest(telegram, redis_url)
    user = await telegram.create_user(language_code="en")
    async with ScriptedWorker(redis_url, lambda job: stream(*[f"p{i} " for i in range(40)], pause=0.05)):
        await telegram.send_photo(user.id, png(), caption="describe")
        await first.pump()
        # a private chat: the answer streams as a draft, and the restarted bot carries on with the same draft
        await telegram.wait_for(lambda: "p1" in getattr(telegram.draft(user.id), "text", ""), 10)
        await first.stop()  # like SIGTERM mid-answer
        second = BotUnderTest(telegram, redis_url)
        await second.startup()  # resumes answers in flight
        await second.finish_answers()
        await second.stop()
    [answer] = telegram.bot_messages(user.id)  # one message: the draft was never a message
    assert answer.text == "".join(f"p{i} " for i in range(40)).strip() and answer.edit_count == 0
    assert {r.chat_id for r in telegram.call_log if r.method == "sendMessageDraft"} == {user.id}
    assert telegram.draft(user.id) is None  # the final message ended the draft
    assert len(await second.dialogs.messages(user.id, user.id)) == 2


async def test_group_answers_are_edited_at_most_every_three_seconds(harness, telegram, redis_url):
    async with ScriptedWorker(redis_url, lambda job: stream(*[f"g{i} " for i in range(40)], pause=0.1)):
        ann = await telegram.create_user(language_code="en")
        group = await telegram.create_group("Team", [ann.id])
        await telegram.send_text(ann.id, "@omni_test_bot tell me", chat_id=group.id)
        await harness.pump()
        await harness.finish_answers()
    edits = [
        r.at
        for r in telegram.call_log
        if r.chat_id == group.id and r.method == "editMessageText" and r.status == 200
    ]
    assert len(edits) >= 2
    assert all(
        b - a >= 2.9 for a, b in zip(edits[:-2], edits[1:-1], strict=True)
    )  # the final one may be sooner
    assert telegram.bot_messages(group.id)[0].text.startswith("g0 g1")


async def test_cancel_of_a_queued_turn_withdraws_it_at_once(harness, telegram):
    user = await telegram.create_user(language_code="en")  # no worker: the job waits in the stream
    await ask(harness, telegram, user.id)
    assert await harness.redis.xlen(protocol.JOBS_STREAM) == 1
    await ask(harness, telegram, user.id, "/cancel")
    await harness.finish_answers(within_s=5)
    assert telegram.bot_messages(user.id)[0].text == "⏹ Stopped."
    assert await harness.redis.xlen(protocol.JOBS_STREAM) == 0  # no worker will ever spend time on it

"""Messages posted on behalf of a chat: Telegram puts the same stand-in account in `from` for every channel
(@Channel_Bot) and every anonymous admin (@GroupAnonymousBot), so the sender is `sender_chat`. Each channel has
its own dialog, busy flag, limit and ban."""

from __future__ import annotations

from bot import keys
from model import protocol
from tests.bot_harness import ADMIN_ID, BOT_USERNAME, ScriptedWorker

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness

CATS, DOGS = -1009000000001, -1009000000002
SLOW = [protocol.delta_event("Thinking it over"), {"sleep": 0.8}, protocol.done_event("Answered.", "stop", 2)]


def answers_to(telegram, chat_id: int, question_id: int) -> list[str]:
    return [
        m.text
        for m in telegram.bot_messages(chat_id)
        if (m.data.get("reply_to_message") or {}).get("message_id") == question_id
    ]


async def test_two_channels_and_an_anonymous_admin_in_one_group_are_three_senders(harness, telegram, redis_url):
    member = await telegram.create_user(first_name="Ann", language_code="en")
    group = await telegram.create_group("Pets", [member.id])
    mention = f"@{BOT_USERNAME}"
    async with ScriptedWorker(redis_url, lambda job: SLOW) as worker:
        cats = await telegram.send_as_channel(group.id, f"{mention} what do cats eat?", channel_id=CATS)
        dogs = await telegram.send_as_channel(group.id, f"{mention} what do dogs eat?", channel_id=DOGS)
        admin = await telegram.send_as_anonymous_admin(group.id, f"{mention} and parrots?")
        await harness.pump()  # all three at once, each with its answer in flight
        await harness.finish_answers()
    for question in (cats, dogs, admin):  # nobody was told "still answering your previous message"
        assert answers_to(telegram, group.id, question.message_id) == ["Answered."]
    assert len(worker.jobs) == 3
    for sender, question in ((CATS, "what do cats eat?"), (DOGS, "what do dogs eat?"), (group.id, "and parrots?")):
        [asked, _] = await harness.dialogs.messages(group.id, sender)  # a dialog of its own
        assert asked["content"][-1]["text"] == question
    assert await harness.redis.zcard(keys.rate_log(CATS)) == 1  # and a limit of its own


async def test_a_banned_channel_is_ignored_and_other_channels_are_not(harness, telegram, redis_url):
    member = await telegram.create_user(first_name="Ann", language_code="en")
    await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    group = await telegram.create_group("Pets", [member.id])
    sent = await telegram.send_text(ADMIN_ID, f"/ban {CATS}")
    await harness.pump()
    assert answers_to(telegram, ADMIN_ID, sent.message_id) == [f"User {CATS} is banned."]
    async with ScriptedWorker(redis_url) as worker:
        banned = await telegram.send_as_channel(group.id, f"@{BOT_USERNAME} hello?", channel_id=CATS)
        other = await telegram.send_as_channel(group.id, f"@{BOT_USERNAME} hello?", channel_id=DOGS)
        await harness.pump()
        await harness.finish_answers()
    assert answers_to(telegram, group.id, banned.message_id) == []
    assert answers_to(telegram, group.id, other.message_id) == ["Hello there."]
    assert len(worker.jobs) == 1

"""/settings and /forget through the real Dispatcher and the local Bot API, real Redis, a scripted worker."""

from __future__ import annotations

import json

from bot import keys
from model import protocol
from tests.bot_harness import BOT_USERNAME, png
from tests.test_bot_chat import buttons, press

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness, scripted


async def command(harness, telegram, user_id, text, chat_id=None):
    sent = await telegram.send_text(user_id, text, chat_id=chat_id)
    await harness.pump()
    [reply] = [m for m in telegram.bot_messages(chat_id or user_id) if m.message_id > sent.message_id]
    return reply


def now(telegram, chat_id, message_id):
    return next(m for m in telegram.transcript(chat_id) if m.message_id == message_id)


async def test_settings_are_chosen_with_buttons_stored_per_user_and_used(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    other = await telegram.create_user(language_code="en")
    panel = await command(harness, telegram, user.id, "/settings")
    assert panel.text.startswith("Settings\nAnswer length: Medium\nCreativity: Balanced\nLanguage: As Telegram")
    assert {"✓ Medium", "✓ Balanced", "✓ As Telegram", "Short", "Creative", "Русский"} <= set(buttons(panel))

    assert (await press(harness, telegram, user.id, panel, "Short"))["text"] == "Saved."
    panel = now(telegram, user.id, panel.message_id)
    assert "Answer length: Short" in panel.text and "✓ Short" in buttons(panel)  # the panel shows the choice
    assert (await press(harness, telegram, user.id, panel, "Precise"))["text"] == "Saved."
    assert await harness.redis.hgetall(keys.preferences(user.id)) == {b"length": b"short", b"creativity": b"precise"}

    await telegram.send_text(user.id, "hello")
    await harness.pump()
    await harness.finish_answers()
    params = scripted.jobs[-1].params
    assert params["max_new_tokens"] == harness.settings.max_new_tokens // 4
    assert (params["temperature"], params["top_p"]) == (0.2, 0.8)

    panel = now(telegram, user.id, panel.message_id)
    await press(harness, telegram, user.id, panel, "Русский")
    panel = now(telegram, user.id, panel.message_id)
    assert panel.text.startswith("Настройки")  # the panel speaks the language just chosen
    assert "Привет" in (await command(harness, telegram, user.id, "/start")).text  # and so does the bot

    # the defaults again: nothing is stored for them
    for label in ("Средний", "Сбалансированно", "Как в Telegram"):
        await press(harness, telegram, user.id, now(telegram, user.id, panel.message_id), label)
    assert not await harness.redis.exists(keys.preferences(user.id))
    assert "Hi" in (await command(harness, telegram, user.id, "/start")).text

    # someone else's panel (a group) is not theirs to press
    group = await telegram.create_group("Both", [user.id, other.id])
    panel = await command(harness, telegram, user.id, f"/settings@{BOT_USERNAME}", chat_id=group.id)
    told = await press(harness, telegram, other.id, panel, "Long", chat_id=group.id)
    assert told["text"] == "Only the person who asked can use these buttons."
    assert not await harness.redis.exists(keys.preferences(other.id))
    assert not await harness.redis.exists(keys.preferences(user.id))


async def everything_about(redis, user_id: int, texts: list[str]) -> list[str]:
    """Every key whose name, members or values mention the user (their id or their words)."""
    needles = [str(user_id).encode(), *(t.encode() for t in texts)]
    found = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "hash":
            values = [b"%s=%s" % kv for kv in (await redis.hgetall(key)).items()]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = await redis.zrange(key, 0, -1)
        else:  # stream
            values = [json.dumps({k.decode(): v.decode() for k, v in f.items()}).encode()
                      for _, f in await redis.xrange(key)]
        if any(n in key or any(n in (v or b"") for v in values) for n in needles):
            found.append(key.decode())
    return sorted(found)


async def test_forget_deletes_everything_of_the_user_after_a_confirmation(harness, telegram, scripted):
    ann = await telegram.create_user(user_id=770_000_001, language_code="en")
    bob = await telegram.create_user(user_id=770_000_002, language_code="en")
    group = await telegram.create_group("Friends", [ann.id, bob.id])
    own, shared = png(color=(10, 200, 10)), png(color=(10, 10, 200))
    secret = "my very secret question"
    await telegram.send_photo(ann.id, own, caption=secret)
    await harness.pump()
    await harness.finish_answers()
    await telegram.send_photo(ann.id, shared, caption=f"@{BOT_USERNAME} {secret} in a group", chat_id=group.id)
    await telegram.send_photo(bob.id, shared, caption=f"@{BOT_USERNAME} bob asks", chat_id=group.id)
    await harness.pump()
    await harness.finish_answers()
    await command(harness, telegram, ann.id, "/settings")
    await harness.preferences.choose(ann.id, "length", "long")
    [answer] = [m for m in telegram.bot_messages(ann.id) if m.text == "Hello there."]
    await telegram.react(ann.id, answer.message_id, "👍")
    await harness.pump()
    own_key = protocol.image_key_for(own)
    shared_key = protocol.image_key_for(shared)
    assert await everything_about(harness.redis, ann.id, [secret])  # there is something to forget

    question = await command(harness, telegram, ann.id, "/forget")
    assert "This cannot be undone" in question.text
    assert list(buttons(question)) == ["🗑 Yes, delete", "Cancel"]
    await press(harness, telegram, ann.id, question, "Cancel")
    assert now(telegram, ann.id, question.message_id).text == "Nothing was deleted."
    assert await harness.dialogs.messages(ann.id, ann.id)  # still there

    question = await command(harness, telegram, ann.id, "/forget")
    await press(harness, telegram, ann.id, question, "🗑")
    assert now(telegram, ann.id, question.message_id).text.startswith("Done: I deleted your dialogs")
    left = await everything_about(harness.redis, ann.id, [secret])
    # Only the rate-limit window stays (it expires with the window; /forget must not reset a limit).
    assert left == [keys.rate_log(ann.id)]
    assert not await harness.redis.exists(own_key)  # only Ann sent it
    assert await harness.redis.exists(shared_key)  # Bob sent it too: it stays for Bob's dialog
    assert len(await harness.dialogs.messages(group.id, bob.id)) == 2  # Bob's dialog is untouched
    assert await harness.preferences.get(ann.id) == {"length": "medium", "creativity": "balanced", "language": "auto"}

    # and the bot carries on with Ann as with a new user
    await telegram.send_text(ann.id, "hello again")
    await harness.pump()
    await harness.finish_answers()
    assert [m["role"] for m in scripted.jobs[-1].messages] == ["user"]


async def test_forget_buttons_are_only_for_the_user_who_asked(harness, telegram, scripted):
    ann = await telegram.create_user(language_code="en")
    bob = await telegram.create_user(language_code="en")
    group = await telegram.create_group("Pair", [ann.id, bob.id])
    await telegram.send_text(ann.id, f"@{BOT_USERNAME} remember this", chat_id=group.id)
    await harness.pump()
    await harness.finish_answers()
    question = await command(harness, telegram, ann.id, f"/forget@{BOT_USERNAME}", chat_id=group.id)
    told = await press(harness, telegram, bob.id, question, "🗑", chat_id=group.id)
    assert told["text"] == "Only the person who asked can use these buttons."
    assert len(await harness.dialogs.messages(group.id, ann.id)) == 2

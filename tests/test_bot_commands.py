"""Commands through the real Dispatcher (`feed_update`), the bot talking real HTTP to the local Bot API."""

from __future__ import annotations

import pytest

from bot import keys
from tests.bot_harness import ADMIN_ID

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness, scripted


async def said(harness, telegram, user_id, text, **kwargs):
    """The user sends `text`; the update goes through the Dispatcher; returns the bot's reply texts."""
    sent = await telegram.send_text(user_id, text, **kwargs)
    await harness.pump()
    chat_id = kwargs.get("chat_id") or user_id
    return [m.text for m in telegram.bot_messages(chat_id) if m.message_id > sent.message_id]


async def test_start_speaks_the_users_language(harness, telegram):
    en = await telegram.create_user(first_name="Ann", language_code="en")
    ru = await telegram.create_user(first_name="Иван", language_code="ru")
    other = await telegram.create_user(first_name="Hans", language_code="de")
    assert "Hi, Ann!" in (await said(harness, telegram, en.id, "/start"))[0]
    assert "Привет, Иван!" in (await said(harness, telegram, ru.id, "/start"))[0]
    assert "Hi, Hans!" in (await said(harness, telegram, other.id, "/start"))[0]


async def test_help_shows_the_users_limit(harness, telegram):
    user = await telegram.create_user(language_code="en")
    await harness.access.set_limit(user.id, "3/day")
    [text] = await said(harness, telegram, user.id, "/help")
    assert "3/day" in text and "/new" in text


async def test_startup_sets_menus_for_everyone_and_for_admins(harness, telegram):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    user = await telegram.create_user(language_code="ru")
    await telegram.send_text(admin.id, "hi")  # the admin's chat exists, so its menu can be set
    await harness.startup()
    user_menu = [c["command"] for c in telegram.commands_for(user.id, user.id, "ru")]
    admin_menu = [c["command"] for c in telegram.commands_for(admin.id, admin.id, "en")]
    assert user_menu == ["start", "help", "new", "retry", "cancel", "settings", "forget"]
    assert admin_menu == user_menu + ["setlimit", "limits", "ban", "unban", "stats"]
    ru_descriptions = {c["description"] for c in telegram.commands_for(user.id, user.id, "ru")}
    assert "Начать новый диалог" in ru_descriptions
    # what an empty chat with the bot and its profile show, in English (the default) and Russian
    descriptions = telegram.bot().descriptions
    assert "OmniFusion" in descriptions[("description", "")]
    assert "модель" in descriptions[("description", "ru")]
    assert 0 < len(descriptions[("short_description", "ru")]) <= 120


async def test_unknown_command_and_cancel_without_answer(harness, telegram):
    user = await telegram.create_user(language_code="en")
    assert "don't know this command" in (await said(harness, telegram, user.id, "/frobnicate"))[0]
    assert "Nothing to cancel" in (await said(harness, telegram, user.id, "/cancel"))[0]
    assert "no question to repeat" in (await said(harness, telegram, user.id, "/retry"))[0]


@pytest.mark.parametrize(
    "command", ["/setlimit 5 1/hour", "/setlimit all 1/minute", "/ban 5", "/unban 5", "/limits", "/stats"]
)
async def test_non_admins_are_refused_and_nothing_changes(harness, telegram, command):
    user = await telegram.create_user(language_code="en")
    await harness.access.ban(777)
    before = sorted(await harness.redis.keys("omnifusion:bot:*"))
    [reply] = await said(harness, telegram, user.id, command)
    assert reply == "This command is for the bot's administrators."
    assert sorted(await harness.redis.keys("omnifusion:bot:*")) == before
    assert await harness.access.is_banned(777)


@pytest.mark.parametrize(
    "command",
    [
        "/setlimit",
        "/setlimit 5",
        "/setlimit 5 hour",
        "/setlimit 5 5/week",
        "/setlimit bob 5/hour",
        "/setlimit 5 0/hour",
        "/setlimit 5 5/hour extra",
    ],
)
async def test_setlimit_syntax_errors_get_the_usage_line(harness, telegram, command):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    [reply] = await said(harness, telegram, admin.id, command)
    assert reply.startswith("Usage: /setlimit <user_id|all> <N>/<minute|hour|day>")
    assert not await harness.redis.keys(keys.limit("*"))


async def test_admin_sets_and_reads_limits(harness, telegram):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    assert (
        "Limit for 555 is now 2/minute"
        in (await said(harness, telegram, admin.id, "/setlimit 555 2/minute"))[0]
    )
    assert (
        "Limit for all is now 10/day" in (await said(harness, telegram, admin.id, "/setlimit all 10/day"))[0]
    )
    assert await harness.access.effective_limit(555) == ((2, 60), "user")
    assert await harness.access.effective_limit(556) == ((10, 86400), "all")
    [one] = await said(harness, telegram, admin.id, "/limits 555")
    assert "User 555: limit 2/minute (set for this user), used 0" in one
    [overview] = await said(harness, telegram, admin.id, "/limits")
    assert "Default limit: 10/day (set with /setlimit all)" in overview and "User 555: 2/minute" in overview
    assert "back on the default" in (await said(harness, telegram, admin.id, "/setlimit 555 default"))[0]
    assert await harness.access.effective_limit(555) == ((10, 86400), "all")
    assert "Usage: /limits" in (await said(harness, telegram, admin.id, "/limits x"))[0]


async def test_ban_and_unban(harness, telegram, scripted):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    user = await telegram.create_user(language_code="en")
    assert f"User {user.id} is banned" in (await said(harness, telegram, admin.id, f"/ban {user.id}"))[0]
    assert (
        "Administrators cannot be banned" in (await said(harness, telegram, admin.id, f"/ban {ADMIN_ID}"))[0]
    )
    assert "Usage: /ban" in (await said(harness, telegram, admin.id, "/ban"))[0]
    assert (await said(harness, telegram, user.id, "hello")) == [
        "You have been blocked by the bot's administrator."
    ]
    assert (await said(harness, telegram, user.id, "/start")) == []  # told once, then silence
    assert await harness.redis.xlen("omnifusion:jobs") == 0
    [limits] = await said(harness, telegram, admin.id, f"/limits {user.id}")
    assert "banned" in limits
    assert "unbanned" in (await said(harness, telegram, admin.id, f"/unban {user.id}"))[0]
    await said(harness, telegram, user.id, "hello again")
    await harness.finish_answers()
    assert [job.messages[-1]["content"][-1]["text"] for job in scripted.jobs] == ["hello again"]


async def test_stats(harness, telegram, scripted):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    for _ in range(2):
        user = await telegram.create_user(language_code="en")
        await said(harness, telegram, user.id, "hi")
    await harness.finish_answers()
    [stats] = await said(harness, telegram, admin.id, "/stats")
    assert "Users: 2 (today: 2)" in stats and "Turns today: 2" in stats
    assert "Queue: 0 waiting, 0 being answered" in stats and "Live workers: 1" in stats


async def test_new_forgets_the_dialog(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await said(harness, telegram, user.id, "remember me")
    await harness.finish_answers()
    assert len(await harness.dialogs.messages(user.id, user.id)) == 2
    assert "forgot our dialog" in (await said(harness, telegram, user.id, "/new"))[0]
    assert await harness.dialogs.messages(user.id, user.id) == []
    await said(harness, telegram, user.id, "fresh start")
    await harness.finish_answers()
    assert [m["role"] for m in scripted.jobs[-1].messages] == ["user"]


async def test_a_failing_handler_answers_briefly_and_the_bot_carries_on(harness, telegram, monkeypatch):
    async def broken(*args):
        raise RuntimeError("Traceback with internals")

    user = await telegram.create_user(language_code="ru")
    monkeypatch.setattr(harness.access, "effective_limit", broken)
    [reply] = await said(harness, telegram, user.id, "/help")
    assert reply.startswith("⚠️ У меня что-то сломалось") and "Traceback" not in reply
    monkeypatch.undo()
    assert "Как со мной общаться" in (await said(harness, telegram, user.id, "/help"))[0]


async def test_an_admins_start_lists_the_admin_commands(harness, telegram):
    admin = await telegram.create_user(user_id=ADMIN_ID, language_code="en")
    user = await telegram.create_user(language_code="en")
    [admin_start] = await said(harness, telegram, admin.id, "/start")
    [user_start] = await said(harness, telegram, user.id, "/start")
    for command in ("/setlimit", "/limits", "/ban", "/unban", "/stats"):
        assert command in admin_start and command not in user_start
    assert "You are an administrator" in admin_start


async def test_start_on_the_demo_model_says_what_it_knows(harness, telegram):
    import json

    from model import protocol

    en = await telegram.create_user(language_code="en")
    ru = await telegram.create_user(language_code="ru")
    assert "demo model" not in (await said(harness, telegram, en.id, "/start"))[0]  # no worker: nothing said
    await harness.redis.set(protocol.heartbeat_key("w1"), json.dumps({"name": "w1", "preset": "demo"}), ex=60)
    harness.queue._presets = (0.0, frozenset())  # as when the cache has aged
    [text] = await said(harness, telegram, en.id, "/start")
    assert "demo model" in text and "shapes" in text and "MODEL_PATH" in text
    [text] = await said(harness, telegram, ru.id, "/start")
    assert "демо-модель" in text and "фигур" in text and "MODEL_PATH" in text

"""`python -m bot` as a real process: polling and webhook mode, /metrics, JSON logs without secrets or user
ids, clean exit on SIGTERM. Plus the offline -> worker arrives path with the real worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import aiohttp
import pytest

from tests.bot_harness import BotUnderTest, RealWorker, ScriptedWorker, png, wait_until

pytest_plugins = ["tests.bot_fixtures"]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_bot_process(telegram, redis_url, **env) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "BOT_TOKEN": telegram.bot().token,
        "TELEGRAM_API_URL": telegram.base_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )


async def stop_with_sigterm(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode, stderr.decode()


def assert_logs_are_clean(logs: str, token: str, user_id: int) -> list[dict]:
    assert token not in logs and token.split(":")[1] not in logs  # the secret half never appears
    entries = [json.loads(line) for line in logs.splitlines() if line.strip()]  # every line is JSON
    assert not any(str(user_id) in json.dumps(e) for e in entries)  # user ids are hashed
    return entries


async def test_polling_process_metrics_logs_and_sigterm(telegram, redis_url):
    metrics_port = free_port()
    async with ScriptedWorker(redis_url):
        process = await start_bot_process(telegram, redis_url, METRICS_PORT=str(metrics_port))
        try:
            user = await telegram.create_user(user_id=913_000_001, language_code="en")
            await wait_until(lambda: telegram.calls["getUpdates"] > 0, 30, "the bot to poll")
            sent = await telegram.send_text(user.id, "/start")
            await telegram.wait_for_bot_message(user.id, after=sent.message_id, timeout=15)
            sent = await telegram.send_photo(user.id, png(), caption="what is it?")
            await telegram.wait_for_bot_message(
                user.id, after=sent.message_id, predicate=lambda m: m.text == "Hello there.", timeout=15
            )
            async with aiohttp.ClientSession() as http:

                async def scrape() -> str | None:  # the counters move right after the final edit
                    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                        text = await response.text()
                    return text if 'bot_replies_total{outcome="done"} 1.0' in text else None

                metrics = await wait_until(scrape, 10, "the reply to be counted")
            assert 'bot_updates_total{kind="message:text"} 1.0' in metrics
            assert 'bot_updates_total{kind="message:photo"} 1.0' in metrics
            assert "bot_reply_latency_seconds_count 1.0" in metrics
        finally:
            code, logs = await stop_with_sigterm(process)
    assert code == 0, logs[-2000:]
    entries = assert_logs_are_clean(logs, telegram.bot().token, user.id)
    assert any(e["msg"] == "answer done" and e.get("user") for e in entries)
    assert entries[-1]["msg"] == "bot stopped"


async def raw_post(port: int, path: str, header_lines: bytes, body: bytes) -> int:
    """An HTTP POST written byte for byte (no client library would send a non-UTF-8 header); its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + header_lines + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status_line.split()[1])


async def refuses_connections(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except OSError:
        return True
    writer.close()
    return False


async def test_webhook_process_checks_the_secret_and_listens_on_this_host_only(telegram, redis_url):
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/tg-hook"
    process = await start_bot_process(  # WEBHOOK_HOST and METRICS_HOST left at their defaults
        telegram,
        redis_url,
        WEBHOOK_URL=url,
        WEBHOOK_PATH="/tg-hook",
        WEBHOOK_PORT=str(port),
        WEBHOOK_SECRET="hook-secret-123",
        METRICS_PORT=str(metrics_port),
    )
    try:
        await wait_until(lambda: telegram.bot().webhook, 30, "the webhook to be set")
        user = await telegram.create_user(user_id=913_000_002, language_code="ru")
        sent = await telegram.send_text(user.id, "/help")
        reply = await telegram.wait_for_bot_message(user.id, after=sent.message_id, timeout=60)
        assert "Как со мной общаться" in reply.text
        forged = {
            "update_id": 999,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "from": {"id": 1, "is_bot": False, "first_name": "X"},
                "text": "/start",
            },
        }
        body, secret = json.dumps(forged).encode(), b"X-Telegram-Bot-Api-Secret-Token: "
        assert await raw_post(port, "/tg-hook", b"", body) == 401
        assert await raw_post(port, "/tg-hook", secret + b"wrong\r\n", body) == 401
        assert await raw_post(port, "/tg-hook", secret + "hook-sécret-123".encode() + b"\r\n", body) == 401
        assert await raw_post(port, "/tg-hook", secret + b"\xff\xfe\r\n", body) == 401
        right = secret + b"hook-secret-123\r\n"
        assert await raw_post(port, "/tg-hook", right, b"{not json") == 400
        assert await raw_post(port, "/tg-hook", right, b"\xff\xfe") == 400
        assert await raw_post(port, "/tg-hook", right, b'{"update_id": "many", "message": 5}') == 400
        # 127.0.0.2 is this machine too, but a socket bound to 127.0.0.1 does not answer there
        assert not await refuses_connections("127.0.0.1", port)
        assert await refuses_connections("127.0.0.2", port)
        assert not await refuses_connections("127.0.0.1", metrics_port)
        assert await refuses_connections("127.0.0.2", metrics_port)
    finally:
        code, logs = await stop_with_sigterm(process)
    assert code == 0, logs[-2000:]
    entries = assert_logs_are_clean(logs, telegram.bot().token, user.id)
    assert not [e for e in entries if e["level"] == "ERROR"]  # nothing a stranger sent failed inside the bot


async def test_offline_model_then_a_real_worker_arrives(telegram, redis_url, tmp_path):
    bot = BotUnderTest(telegram, redis_url, max_new_tokens=30)
    await bot.start_polling()
    worker = RealWorker(redis_url, tmp_path / "worker.log")
    try:
        user = await telegram.create_user(language_code="en")
        sent = await telegram.send_photo(user.id, png(), caption="Anyone there?")
        # a private chat: the status is the chat's draft (kept alive while the turn waits)
        await telegram.wait_for(lambda: "offline" in getattr(telegram.draft(user.id), "text", ""), 15)
        await asyncio.to_thread(worker.start)
        await bot.finish_answers(within_s=60)
        [answer] = [m for m in telegram.bot_messages(user.id) if m.message_id > sent.message_id]
        assert "offline" not in answer.text and len(await bot.dialogs.messages(user.id, user.id)) == 2
    finally:
        await bot.stop()
        await asyncio.to_thread(worker.stop)

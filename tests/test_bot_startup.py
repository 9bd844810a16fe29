"""`python -m bot` failing to start never prints the token: not when the Bot API's error body echoes the
request path (which holds the token), not when the token is pasted into another setting. Every line of the
process' output is checked for the token and for its secret half."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from aiohttp import web

from tests.test_bot_process import free_port

pytestmark = pytest.mark.slow

TOKEN = "7701234567:AAFq-distinctive_SECRET-half_0123456"  # shaped like a real one: 35 characters after ':'
SECRET_HALF = TOKEN.split(":", 1)[1]


async def run_bot(env: dict[str, str], within_s: float = 180.0) -> tuple[int, list[str]]:  # a busy machine
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env={**os.environ, "BOT_TOKEN": TOKEN, "METRICS_PORT": "0", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), within_s)
    return process.returncode, (stdout + stderr).decode(errors="replace").splitlines()


def assert_no_token(lines: list[str]) -> None:
    assert lines, "the bot said nothing about why it stopped"
    leaking = [line for line in lines if SECRET_HALF in line or SECRET_HALF[:12] in line]
    assert not leaking, leaking[:3]


async def broken_bot_api(kind: str) -> web.AppRunner:
    """A Bot API that answers everything with an error quoting the request path, as proxies and the real
    server's 400 descriptions can."""

    async def answer(request: web.Request) -> web.Response:
        if kind == "html-502":
            page = f"<html><body><h1>502 Bad Gateway</h1><p>upstream failed for {request.path}</p></body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        body = {"ok": False, "error_code": 400, "description": f"Bad Request: no such method {request.path}"}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


@pytest.mark.parametrize(
    ("kind", "mode", "log_format"), [("html-502", "polling", "json"), ("json-400", "webhook", "text")]
)
async def test_startup_against_a_failing_bot_api_never_prints_the_token(redis_url, kind, mode, log_format):
    runner = await broken_bot_api(kind)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {"TELEGRAM_API_URL": f"http://127.0.0.1:{port}", "REDIS_URL": redis_url, "LOG_FORMAT": log_format}
    if mode == "webhook":
        env |= {"WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_PORT": str(free_port())}
    try:
        code, lines = await run_bot(env)
    finally:
        await runner.cleanup()
    assert code == 1
    assert_no_token(lines)
    assert any("the bot stopped" in line for line in lines)
    assert any("<secret>" in line for line in lines)  # the echo was there, scrubbed
    if log_format == "json":
        assert all(json.loads(line)["logger"] for line in lines)  # nothing printed around the logging


async def test_a_token_pasted_into_other_settings_is_not_echoed():
    variables = ["DEFAULT_RATE_LIMIT", "ADMIN_IDS", "LOG_LEVEL", "MAX_NEW_TOKENS"]
    code, lines = await run_bot(dict.fromkeys(variables, TOKEN))  # one start reports every bad setting
    assert code == 2
    assert_no_token(lines)
    for variable in variables:
        assert any(line.strip().startswith(f"{variable}:") for line in lines), variable  # named, not quoted

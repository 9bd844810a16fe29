"""`make demo` (python -m local_bot_api.demo): a worker on the tiny model and the bot, as supervised subprocesses.

With BOT_TOKEN set (environment or .env) the bot talks to Telegram. Without it, the local Bot API server
from local_bot_api is started too, the bot is pointed at it with TELEGRAM_API_URL, and the playground URL is
printed: a web chat with the very same `python -m bot`. Ctrl-C (or SIGTERM) stops everything; if any part
dies, the rest is stopped too. Redis is expected to be running (the Makefile starts it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from pydantic_settings import BaseSettings, SettingsConfigDict

from local_bot_api import DEFAULT_TOKEN


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    bot_token: str | None = None
    redis_url: str = "redis://localhost:6379/0"
    demo_port: int = 8081  # the playground's port (another free one is taken if it is busy)


def _free(port: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the local Bot API server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the local Bot API server did not answer at {url}")


class Supervisor:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, *args], env=env)
        self.children.append((name, process))
        return process

    def watch(self) -> int:
        """Until Ctrl-C/SIGTERM (0) or until a child dies (1)."""
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"]:
                for name, process in self.children:
                    if process.poll() is not None:
                        print(f"\n{name} exited with {process.returncode}; stopping the demo", flush=True)
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return 0

    def stop_all(self) -> None:
        for _, process in reversed(self.children):  # the bot first, the worker last
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", flush=True)
                process.kill()


def main() -> int:
    settings = DemoSettings()
    env = {**os.environ, "REDIS_URL": settings.redis_url, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor()
    try:
        playground = None
        if not settings.bot_token:
            port = _free(settings.demo_port)
            playground = f"http://127.0.0.1:{port}"
            api = supervisor.start(
                "local Bot API", ["-m", "local_bot_api", "--port", str(port), "--token", DEFAULT_TOKEN], env
            )
            _wait_http(f"{playground}/_control/bot", api)
            env.update(BOT_TOKEN=DEFAULT_TOKEN, TELEGRAM_API_URL=playground)
        supervisor.start("worker", ["-m", "model.worker"], {**env, "MODEL_PRESET": "tiny"})
        supervisor.start("bot", ["-m", "bot"], env)
        if playground:
            print(f"\n  OmniFusion playground: {playground}/\n", flush=True)
        else:
            print(
                "\n  The bot is running against Telegram: open your bot's chat and say /start.\n", flush=True
            )
        return supervisor.watch()
    finally:
        supervisor.stop_all()


if __name__ == "__main__":
    sys.exit(main())

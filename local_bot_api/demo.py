"""`make demo` (python -m local_bot_api.demo): a worker on the demo model (a small OmniFusion trained by this
project on pictures of coloured shapes, docs/demo-model.md; MODEL_PRESET or MODEL_PATH choose another) and
the bot, as supervised subprocesses.

With BOT_TOKEN set (environment or .env) the bot talks to Telegram. Without it, the local Bot API server
from local_bot_api is started too, the bot is pointed at it with TELEGRAM_API_URL, and the playground URL is
printed: a web chat with the very same `python -m bot`. The playground keeps its chats in .demo/ (another
folder: DEMO_STATE_DIR) and comes back on the same port after a restart. Ctrl-C (or SIGTERM) stops
everything in order and exits 0; if any part dies, the rest is stopped too. Redis is expected to be running
(the Makefile starts it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from local_bot_api import DEFAULT_TOKEN
from local_bot_api.persist import StateFile

BANNERS = {
    "demo": "Demo model: a small OmniFusion that knows circles, squares and triangles in six colours (English "
            "and Russian). Click a sample below and ask about colours, shapes, counts and positions. For real "
            "photos use real weights: MODEL_PATH (README).",
    "tiny": "Demo model: tiny, with random weights, so its answers are noise. "
            "For real answers use real weights (README).",
}
DEFAULT_PRESET = "demo"
DEFAULT_PORT = 8081


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    bot_token: str | None = None
    redis_url: str = "redis://localhost:6379/0"
    demo_port: int | None = None  # the playground's port; default: the last run's, else 8081 (else any free)
    demo_state_dir: Path = Path(".demo")  # the playground's chats and files, kept across restarts
    demo_banner: str | None = None  # the playground's one-line banner; default: what the model knows
    # The worker's model: DEMO_MODEL_PRESET (default demo) unless MODEL_PATH names real weights, which are
    # then served with MODEL_PRESET, as `python -m model.worker` would.
    demo_model_preset: str = DEFAULT_PRESET
    model_preset: str = "tiny"
    model_path: str | None = None

    def worker_preset(self) -> str:
        return self.model_preset if self.model_path else self.demo_model_preset

    def banner(self) -> str:
        if self.demo_banner:
            return self.demo_banner
        if self.model_path:
            return f"Model: {self.model_preset} from {self.model_path}."
        return BANNERS.get(self.demo_model_preset, f"Model preset: {self.demo_model_preset}.")

    @field_validator("demo_port", "demo_banner", "model_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


# The tray: scenes of the demo model's own world (training/demo_world), each with the question sent with it.
SAMPLES = [
    ("red circle", [("circle", "red")], "What colour is the shape?"),
    ("blue square", [("square", "blue")], "What shape is it?"),
    ("three shapes", [("triangle", "green"), ("circle", "yellow"), ("square", "purple")], "How many shapes are there?"),
    ("orange triangle", [("triangle", "orange")], "Какого цвета фигура?"),
    ("two circles", [("circle", "blue"), ("circle", "red")], "Is there a blue circle?"),
    ("busy picture", [("square", "green"), ("triangle", "red"), ("circle", "blue"), ("square", "yellow")],
     "Describe the picture."),
]


def sample_pictures() -> list[tuple[str, bytes, str]]:
    """The playground's tray: (name, PNG bytes, the caption sent with it), drawn by the demo world's
    generator (the same code that drew the demo model's training pictures), the same every run."""
    import random

    from training.demo_world.scenes import random_scene, render

    pictures = []
    for i, (name, kinds, caption) in enumerate(SAMPLES):
        scene = random_scene(random.Random(100 + i), kinds=kinds)
        scene.width = scene.height = 256  # a size people see well in a chat; the model sees 96 px anyway
        scene.background = "off-white"
        image, _ = render(scene)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        pictures.append((name, buffer.getvalue(), caption))
    return pictures


def _port(preferred: int) -> int:
    """`preferred` unless something listens there, else a free port. SO_REUSEADDR as the server binds: a
    port whose last connections linger in TIME_WAIT after a quick restart counts as free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
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


def _configure_playground(base_url: str, banner: str) -> None:
    samples = [
        {"name": name, "caption": caption, "data_base64": base64.b64encode(data).decode()}
        for name, data, caption in sample_pictures()
    ]
    request = urllib.request.Request(
        f"{base_url}/_control/set_playground",
        data=json.dumps({"banner": banner, "samples": samples}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


class Supervisor:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        # A session of its own: Ctrl-C in the terminal reaches only this process, which then stops the
        # children one by one (the bot before the server it talks to), so none of them logs errors about
        # a peer that went away first.
        process = subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)
        self.children.append((name, process))
        return process

    def watch(self) -> int:
        """Until Ctrl-C/SIGTERM/SIGHUP (0) or until a child dies (1)."""
        stop = {"now": False}
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.update(now=True))
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
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        for name, process in reversed(self.children):  # the bot, the worker, then the server
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", flush=True)
                process.kill()
                process.wait()


def main() -> int:
    # Started in the background (`make demo &` in a script, nohup) a process inherits SIGINT ignored, and Python
    # then leaves it ignored: Ctrl-C / kill -INT would not stop the demo. It is our stop signal, so take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = DemoSettings()
    env = {**os.environ, "REDIS_URL": settings.redis_url, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor()
    try:
        playground = None
        if not settings.bot_token:
            state = StateFile(settings.demo_state_dir / "state.json")
            port = _port(settings.demo_port or state.remembered_port() or DEFAULT_PORT)
            playground = f"http://127.0.0.1:{port}"
            server = ["-m", "local_bot_api", "--port", str(port), "--token", DEFAULT_TOKEN, "--quiet"]
            api = supervisor.start("local Bot API", [*server, "--state", str(state.path)], env)
            _wait_http(f"{playground}/_control/bot", api)
            _configure_playground(playground, settings.banner())
            env.update(BOT_TOKEN=DEFAULT_TOKEN, TELEGRAM_API_URL=playground)
        supervisor.start("worker", ["-m", "model.worker"], {**env, "MODEL_PRESET": settings.worker_preset()})
        supervisor.start("bot", ["-m", "bot"], env)
        if playground:
            print(f"\n  OmniFusion playground: {playground}/\n", flush=True)
        else:
            print(
                "\n  The bot is running against Telegram: open your bot's chat and say /start.\n", flush=True
            )
        return supervisor.watch()
    except KeyboardInterrupt:  # Ctrl-C while starting up: stop what started, no traceback
        return 0
    finally:
        supervisor.stop_all()


if __name__ == "__main__":
    sys.exit(main())

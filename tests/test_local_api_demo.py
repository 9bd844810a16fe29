"""`python -m local_bot_api.demo` (what `make demo` runs without BOT_TOKEN: the local Bot API server, a
worker on the demo model and `python -m bot`) as a subprocess on a private Redis database and a free port.

In a real browser: headless Chromium opens the printed URL, sends a drawn photo with a question and a
follow-up, and sees the answers stream in from the real bot and worker. The demo model's wording is
checked in tests/test_demo_model.py: this test checks structure (a reply to each message, streamed by edits
from the placeholder, kept in the dialog in Redis), never wording.
Set PLAYGROUND_SCREENSHOT=docs/playground.png to refresh the committed example picture.

As a process: stopped with Ctrl-C (SIGINT to its process group, as a terminal sends it) it exits 0 with no
ERROR line from any part, having printed its URL once; started again it comes back on the same port with
the chat history and files of the last run.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from PIL import Image, ImageDraw

from bot import keys
from local_bot_api.demo import sample_pictures
from model import protocol

async_playwright = pytest.importorskip("playwright.async_api").async_playwright
CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)")
pytestmark = [pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drawn_photo() -> bytes:
    """A little scene (sky, sun, house) so the screenshot shows a real picture, not a flat colour."""
    image = Image.new("RGB", (480, 320), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 230, 480, 320), fill=(90, 160, 70))
    draw.ellipse((370, 30, 440, 100), fill=(250, 210, 60))
    draw.rectangle((120, 150, 260, 250), fill=(200, 80, 60))
    draw.polygon([(105, 150), (190, 85), (275, 150)], fill=(120, 60, 40))
    draw.rectangle((175, 195, 205, 250), fill=(90, 50, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def wait_for(condition, within_s: float, what: str, every_s: float = 0.1):
    deadline = time.monotonic() + within_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every_s)


class Demo:
    """One `python -m local_bot_api.demo`, in a process group of its own like a terminal's foreground job."""

    def __init__(self, redis_url: str, state_dir: Path, log_path: Path, port: int | None) -> None:
        env = {
            **os.environ,
            "BOT_TOKEN": "",  # the playground, even where a .env holds a real token
            "REDIS_URL": redis_url,
            "DEMO_STATE_DIR": str(state_dir),
            "DEMO_PORT": str(port or ""),  # empty: the port the last run remembered
            "METRICS_PORT": "0",  # other bots (tests, a demo) may hold the default port
            "WORKER_METRICS_PORT": "0",
            "MAX_NEW_TOKENS": "40",  # short noise reads better in the screenshot
            "LOG_FORMAT": "text",
        }
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local_bot_api.demo"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # as a background job starts it (`make demo &`, nohup): SIGINT ignored; Ctrl-C must still stop it
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            )
        self.redis_url = redis_url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self) -> str:
        """The printed playground URL, once the worker is up too."""

        def printed() -> str | None:
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            found = re.search(r"OmniFusion playground: (\S+)", self.log())
            return found.group(1) if found else None

        url = wait_for(printed, 60, "the playground URL")
        client = redis.Redis.from_url(self.redis_url)
        wait_for(lambda: client.keys(protocol.HEARTBEAT_PATTERN), 120, "the worker's heartbeat")
        client.close()
        return url

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


@pytest.fixture
def demo(redis_url, tmp_path):
    """A running demo; yields the printed URL; Ctrl-C at the end must exit 0."""
    running = Demo(redis_url, tmp_path / ".demo", tmp_path / "demo.log", free_port())
    try:
        yield running.url()
    finally:
        assert running.ctrl_c() == 0, running.log()[-3000:]


def control(url: str, action: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}_control/{action}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["result"]


async def answer_to(page, question: str, client: redis.Redis, user_id: int) -> tuple:
    """The bot's bubble quoting `question`, once the answer is final: it is no longer a status line and the
    bot has released the user's answer in flight (it edits the message before releasing it)."""
    bubble = page.locator(".msg:not(.me)", has=page.locator(".quote", has_text=question))
    await bubble.wait_for(timeout=60_000)
    deadline = time.monotonic() + 90
    while client.exists(keys.inflight(user_id)) or "⏳" in await bubble.inner_text():
        assert time.monotonic() < deadline, "the answer never became final"
        await page.wait_for_timeout(100)
    return bubble


def transcript(url: str, chat_id: int) -> list[dict]:
    """The chat as the server holds it (message views with their edit history), over the control API."""
    with urllib.request.urlopen(f"{url}_control/transcript?chat_id={chat_id}", timeout=5) as response:
        return json.load(response)["messages"]


@pytest.mark.browser
@needs_chromium
async def test_playground_against_the_real_stack(demo, redis_url, tmp_path):
    photo = drawn_photo()
    (tmp_path / "house.png").write_bytes(photo)
    client = redis.Redis.from_url(redis_url)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a new, empty profile
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            locale="en-US",
            viewport={"width": 900, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await page.goto(demo)
            await page.locator("#status", has_text="online").wait_for(timeout=15_000)
            user_id = int((await page.inner_text("#whoami")).split()[-1])
            # the real bot set its command menu at start
            await page.locator("#menu button", has_text="/new").wait_for(timeout=15_000)

            question = "What is on this picture?"
            await page.set_input_files("#attach", str(tmp_path / "house.png"))
            await page.fill("#text", question)
            await page.click("form button[type=submit]")
            await page.locator(".msg.me img").wait_for(timeout=10_000)
            first = await answer_to(page, question, client, user_id)

            follow_up = "And what colour is the roof?"
            await page.fill("#text", follow_up)
            await page.click("form button[type=submit]")
            second = await answer_to(page, follow_up, client, user_id)

            # a document from the file picker: its text goes into the turn, with its name
            (tmp_path / "notes.txt").write_text("The meeting is at noon. Bring the red folder.\n")
            doc_question = "When is the meeting?"
            await page.set_input_files("#attach", str(tmp_path / "notes.txt"))
            await page.fill("#text", doc_question)
            await page.click("form button[type=submit]")
            third = await answer_to(page, doc_question, client, user_id)
            # the buttons under the answer: 🔄 asks again, and the old answer is marked as replaced
            await third.locator(".keyboard button", has_text="Regenerate").click()
            await page.locator(".msg .keyboard button", has_text="Replaced by a newer answer").wait_for(timeout=90_000)
            deadline = time.monotonic() + 90
            while client.exists(keys.inflight(user_id)):
                assert time.monotonic() < deadline, "the regenerated answer never became final"
                await page.wait_for_timeout(100)
            shot = tmp_path / "playground.png"
            await page.screenshot(path=str(shot))

            bubbles = [await b.inner_text() for b in (first, second)]
            assert page_errors == [] and await page.inner_text("#error") == ""
        finally:
            await context.close()

    # A private chat: each answer streamed as a draft and was sent as one message; since then only its
    # buttons changed (a newer answer took them away).
    views = transcript(demo, user_id)
    user_messages = [v for v in views if not v["from_bot"]]
    bot_messages = [v for v in views if v["from_bot"] and not v["deleted"]]
    answers = [v for v in bot_messages if v["message"].get("reply_to_message")]
    asked = [m["message_id"] for m in user_messages]
    assert [v["message"]["reply_to_message"]["message_id"] for v in answers] == [*asked, asked[-1]]
    # exactly one reply per user message, and the regenerated one quotes the document's message again
    for view, shown in zip(answers[:2], bubbles, strict=True):
        text = view["message"]["text"]
        assert all(h.get("text") == text for h in view["history"])  # never a placeholder, never edited text
        assert text.strip() and not text.startswith(("⏳", "⚠️"))
        assert text.strip() in shown  # the browser shows what the bot sent last
    # The dialog in Redis: the photo (stored by the hash of the very bytes the browser uploaded) and the
    # question, the model's answer, the follow-up and its answer.
    dialog = [json.loads(m) for m in client.lrange(keys.dialog(user_id, user_id), 0, -1)]
    client.close()
    assert [m["role"] for m in dialog] == ["user", "assistant"] * 3  # the regenerated answer replaced one
    assert dialog[0]["content"][0] == {
        "type": "image",
        "key": protocol.image_key(hashlib.sha256(photo).hexdigest()),
    }
    assert dialog[0]["content"][-1]["text"] == question and dialog[2]["content"][-1]["text"] == follow_up
    document_turn = dialog[4]["content"][-1]["text"]
    assert document_turn.startswith("File notes.txt:\nThe meeting is at noon.") and document_turn.endswith(doc_question)
    assert all(m["content"][0]["text"].strip() for m in dialog[1::2])
    assert shot.stat().st_size > 20_000
    if target := os.environ.get("PLAYGROUND_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / target)


def test_a_restart_keeps_history_and_port_and_ctrl_c_is_clean(redis_url, tmp_path):
    port, state_dir, user_id = free_port(), tmp_path / ".demo", 4242
    first = Demo(redis_url, state_dir, tmp_path / "first.log", port)
    try:
        url = first.url()
        assert url == f"http://127.0.0.1:{port}/"
        control(url, "create_user", {"user_id": user_id, "first_name": "Ann"})
        name, picture, caption = sample_pictures()[0]
        control(url, "send_sample", {"user_id": user_id, "name": name})  # the tray demo.py gave the server

        def answered() -> list[dict] | None:
            client = redis.Redis.from_url(redis_url)
            busy = client.exists(keys.inflight(user_id))
            client.close()
            views = transcript(url, user_id)
            done = [v for v in views if v["from_bot"] and v["message"].get("reply_to_message")]
            return views if done and not busy and "⏳" not in done[0]["message"]["text"] else None

        before = wait_for(answered, 90, "the bot's answer to the sample picture")
        assert before[0]["message"]["caption"] == caption
        # a browser tab stays connected across the restart (its socket lingers in TIME_WAIT afterwards)
        tab = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        tab.request("GET", "/_control/bot")
        tab.getresponse().read()
    finally:
        code = first.ctrl_c()
    log = first.log()
    assert code == 0, log[-3000:]
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
    assert log.count(f"127.0.0.1:{port}") == 1, log  # the URL is printed once

    second = Demo(redis_url, state_dir, tmp_path / "second.log", port=None)  # no DEMO_PORT: remembered
    try:
        assert second.url() == url
        after = transcript(url, user_id)
        assert [
            (v["message_id"], v["message"].get("text", v["message"].get("caption")))
            for v in after[: len(before)]
        ] == [(v["message_id"], v["message"].get("text", v["message"].get("caption"))) for v in before]
        file_id = after[0]["message"]["photo"][-1]["file_id"]
        with urllib.request.urlopen(f"{url}_control/files/{file_id}", timeout=5) as response:
            assert response.read() == picture  # the files came back with the history
    finally:
        code = second.ctrl_c()
    assert code == 0 and "ERROR" not in second.log(), second.log()[-3000:]

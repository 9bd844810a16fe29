"""The committed demo model (model/checkpoints/demo, docs/demo-model.md) as users meet it: end to end through the
real bot (polling), the local Bot API over HTTP, Redis and `python -m model.worker` with MODEL_PRESET=demo and no
MODEL_PATH; and through `python -m model.generate --preset demo`.

Unlike the tiny preset's noise these answers have a right wording, so this is the semantic gate of the whole
chain: a photo that did not reach the model, or reached it as another picture or in the wrong colours, would
be answered wrongly here. The pictures are drawn by the demo world's generator with seeds no training run
uses."""

from __future__ import annotations

import io
import itertools
import os
import random
import subprocess
import sys

import pytest

from model.checkpoint import PACKAGED
from tests.bot_harness import BotUnderTest, RealWorker, wait_until
from training.demo_world.scenes import POSITIONS, random_scene, render

pytest_plugins = ["tests.bot_fixtures"]
pytestmark = pytest.mark.slow

_user_ids = itertools.count(830_000_001)


def picture(shape: str, colour: str, seed: int, fmt: str = "PNG", region: str | None = None) -> bytes:
    scene = random_scene(random.Random(seed), kinds=[(shape, colour)], regions=[region] if region else None)
    scene.width, scene.height = 320, 240  # a photo-like size; the model sees 96 px
    image, _ = render(scene)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def demo_worker(module_redis_url, tmp_path_factory):
    real = RealWorker(module_redis_url, tmp_path_factory.mktemp("worker") / "worker.log", MODEL_PRESET="demo",
                      MODEL_PATH="").start()
    yield real
    real.stop()


@pytest.fixture
async def bot(telegram, module_redis_url, demo_worker):
    running = BotUnderTest(telegram, module_redis_url, max_new_tokens=48, temperature=0.0)  # greedy, as scored
    await running.start_polling()
    yield running
    await running.stop()


async def answer_to(bot, telegram, user_id: int, sent) -> str:
    """The answer the user reads to message `sent` (and the same text kept as the dialog's last turn)."""

    async def done() -> bool:
        replied = any(m.message_id > sent.message_id for m in telegram.bot_messages(user_id))
        return replied and await bot.access.inflight(user_id) is None

    await wait_until(done, 60, f"the answer to message {sent.message_id}")
    dialog = await bot.dialogs.messages(user_id, user_id)
    kept = dialog[-1]["content"][0]["text"]
    shown = " ".join(m.text or "" for m in telegram.bot_messages(user_id) if m.message_id > sent.message_id)
    assert " ".join(kept.split()) in " ".join(shown.split()), (kept, shown)
    return kept.lower()


async def test_a_photo_its_follow_up_and_a_russian_question(bot, telegram):
    user = await telegram.create_user(user_id=next(_user_ids), language_code="en")
    sent = await telegram.send_photo(user.id, picture("circle", "red", 9001), caption="What colour is the shape?")
    answer = await answer_to(bot, telegram, user.id, sent)
    assert "red" in answer and not any(c in answer for c in ("green", "blue", "yellow", "orange", "purple"))

    sent = await telegram.send_text(user.id, "And what shape is it?")
    answer = await answer_to(bot, telegram, user.id, sent)
    assert "circle" in answer and "square" not in answer and "triangle" not in answer

    russian = await telegram.create_user(user_id=next(_user_ids), language_code="ru")
    sent = await telegram.send_photo(russian.id, picture("triangle", "green", 9003), caption="Какого цвета фигура?")
    answer = await answer_to(bot, telegram, russian.id, sent)
    assert "зелён" in answer or "зелен" in answer, answer
    assert not any(c in answer for c in "abcdefghijklmnopqrstuvwxyz"), answer  # answered in Russian
    sent = await telegram.send_text(russian.id, "Что это за фигура?")
    assert "треугольник" in await answer_to(bot, telegram, russian.id, sent)


async def test_where_the_shape_is(bot, telegram):
    # the place of the shape: the demo model answered it at chance until stage 2's adapter learned slower
    # (training/configs/demo/stage2.yaml); a photo mirrored or cropped on its way would be answered wrongly
    for shape, colour, seed, region, question in (
            ("square", "blue", 9005, "left", "Where is the square?"),
            ("triangle", "orange", 9006, "top", "Where is the shape?"),
            ("circle", "purple", 9007, "right", "In which part of the picture is the circle?")):
        user = await telegram.create_user(user_id=next(_user_ids), language_code="en")
        sent = await telegram.send_photo(user.id, picture(shape, colour, seed, region=region), caption=question)
        answer = await answer_to(bot, telegram, user.id, sent)
        assert region in answer and not any(other in answer for other in POSITIONS if other != region), answer


async def test_later_photos_in_the_same_dialog_are_answered_about_the_newest(bot, telegram):
    user = await telegram.create_user(user_id=next(_user_ids), language_code="en")
    sent = await telegram.send_photo(user.id, picture("circle", "red", 9001), caption="What colour is the shape?")
    assert "red" in await answer_to(bot, telegram, user.id, sent)
    # later photos in the same dialog: each answer is about the newest photo, never about the one before. The
    # demo model is weakest here (two-photo dialogs: docs/demo-model.md): two of three must be right.
    right, before = 0, "red"
    for shape, colour, seed in (("square", "blue", 9002), ("triangle", "green", 9013), ("circle", "yellow", 9022)):
        sent = await telegram.send_photo(user.id, picture(shape, colour, seed, "JPEG"),
                                         caption="What colour is the shape?")
        answer = await answer_to(bot, telegram, user.id, sent)
        assert before not in answer, (colour, answer)
        right += colour in answer
        before = colour
    assert right >= 2
    dialog = await bot.dialogs.messages(user.id, user.id)
    assert sum(part["type"] == "image" for m in dialog for part in m["content"]) == 4


async def test_a_greeting_is_answered_in_its_language(bot, telegram):
    # The first thing a new user types. A model of the recipe answered "Hello!" in Russian while the held-out
    # set's text skill still scored 95 %: greetings were about 50 of 9,600 training dialogs (variants.greeted).
    for greeting, lang in (("Hello!", "en"), ("hello", "en"), ("Hi!", "en"), ("Good morning!", "en"),
                           ("Привет!", "ru"), ("привет", "ru"), ("Здравствуйте!", "ru")):
        user = await telegram.create_user(user_id=next(_user_ids), language_code=lang)
        sent = await telegram.send_text(user.id, greeting)
        answer = await answer_to(bot, telegram, user.id, sent)
        latin = sum(c in "abcdefghijklmnopqrstuvwxyz" for c in answer)
        cyrillic = sum("а" <= c <= "я" or c == "ё" for c in answer)
        assert (latin > 3 * cyrillic) if lang == "en" else (cyrillic > 3 * latin), (greeting, answer)
        assert "picture" in answer or "картинк" in answer, (greeting, answer)  # says what to do next


def test_generate_cli_answers_with_the_demo_preset(tmp_path):
    path = tmp_path / "shape.png"
    path.write_bytes(picture("circle", "blue", 9004))
    result = subprocess.run(
        [sys.executable, "-m", "model.generate", "--preset", "demo", "--image", str(path), "--prompt",
         "What colour is the shape?"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "MODEL_PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "blue" in result.stdout.lower(), result.stdout


def test_the_checkpoint_ships_small():
    files = [p for p in PACKAGED["demo"].rglob("*") if p.is_file()]
    assert (PACKAGED["demo"] / "config.json").is_file()
    assert sum(p.stat().st_size for p in files) <= 20 * 1024 * 1024

"""What the bot accepts as a turn, and what it turns away, through the real Dispatcher. The scripted worker
answers every job with "Hello there."."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from bot import keys
from model import protocol
from tests.bot_harness import BOT_USERNAME, ScriptedWorker, png

pytest_plugins = ["tests.bot_fixtures"]  # telegram, harness, scripted


QUEUED = "📝 Got it: I will answer this as soon as I finish the current answer."
BUSY = (
    "I am still answering, and your next message is already waiting. Send this one again after the answer, "
    "or /cancel to stop it."
)


async def bot_texts(telegram, chat_id, after):
    return [m.text for m in telegram.bot_messages(chat_id) if m.message_id > after]


def image_parts(job):
    return [part for message in job.messages for part in message["content"] if part["type"] == "image"]


async def test_photo_with_caption_becomes_one_job_and_one_answer(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    data = png(640, 480)
    sent = await telegram.send_photo(user.id, data, caption="What is on this photo?")
    await harness.pump()
    await harness.finish_answers()
    [job] = scripted.jobs
    question = job.messages[-1]["content"]
    assert question[-1] == {"type": "text", "text": "What is on this photo?"}
    [image] = image_parts(job)
    stored = await harness.redis.get(image["key"])
    assert stored is not None and image["key"] == protocol.image_key(hashlib.sha256(stored).hexdigest())
    assert 0 < await harness.redis.ttl(image["key"]) <= harness.settings.image_ttl_s
    [answer] = telegram.bot_messages(user.id)
    assert answer.text == "Hello there." and answer.data["reply_to_message"]["message_id"] == sent.message_id
    # a private chat: "Thinking…" and the text as it grows are the chat's draft; the answer is one new message
    assert answer.edit_count == 0 and telegram.calls["sendMessageDraft"] >= 1
    assert telegram.draft(user.id) is None
    assert job.deadline and job.params == harness.settings.generation_params


async def test_follow_up_keeps_the_photo_and_a_photo_is_stored_once(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await telegram.send_photo(user.id, png(), caption="What is this?")
    await harness.pump()
    await harness.finish_answers()
    await telegram.send_text(user.id, "And what colour is it?")
    await harness.pump()
    await harness.finish_answers()
    first, follow_up = scripted.jobs
    assert [m["role"] for m in follow_up.messages] == ["user", "assistant", "user"]
    assert image_parts(follow_up) == image_parts(first)  # the photo is still in the dialog
    assert follow_up.messages[1]["content"] == [{"type": "text", "text": "Hello there."}]
    assert len(await harness.redis.keys("omnifusion:image:*")) == 1


async def test_photo_alone_asks_for_a_description_in_the_users_language(harness, telegram, scripted):
    user = await telegram.create_user(language_code="ru")
    await telegram.send_photo(user.id, png())
    await harness.pump()
    await harness.finish_answers()
    assert scripted.jobs[0].messages[-1]["content"][-1]["text"] == "Что на этой картинке? Опиши её."


async def test_picture_sent_as_a_file(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await telegram.send_document(
        user.id, png(), file_name="scan.png", mime_type="image/png", caption="Read it"
    )
    await harness.pump()
    await harness.finish_answers()
    assert len(image_parts(scripted.jobs[0])) == 1


def tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "TIFF")
    return buffer.getvalue()


async def test_pictures_we_do_not_decode_are_refused_without_a_download(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    for data, name, mime_type in [(tiff(), "scan.tiff", "image/tiff"), (b"ftypheic", "IMG_1.HEIC", "image/heic"),
                                  (tiff(), "scan.tif", "application/octet-stream")]:
        sent = await telegram.send_document(user.id, data, file_name=name, mime_type=mime_type)
        await harness.pump()
        assert await bot_texts(telegram, user.id, sent.message_id) == [
            "This kind of picture isn't supported. Please send it as a JPEG or PNG."
        ]
    assert telegram.calls["getFile"] == 0 and scripted.jobs == []


async def test_zero_width_characters_are_no_question(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    sent = await telegram.send_text(user.id, "\u200b\u200d\u2060\ufeff \u3164")
    await harness.pump()
    assert await bot_texts(telegram, user.id, sent.message_id) == ["Send me a photo or a question."]
    await telegram.send_photo(user.id, png(), caption="\u200b")  # a photo with a blank caption: describe it
    await harness.pump()
    await harness.finish_answers()
    [job] = scripted.jobs
    assert job.messages[-1]["content"][-1]["text"] == "What is in this picture? Describe it."


async def test_album_is_one_turn(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    await telegram.send_album(user.id, [png(color=c) for c in colours], caption="Compare these")
    assert await harness.pump() == 3
    await harness.finish_answers()
    [job] = scripted.jobs
    assert len(image_parts(job)) == 3 and job.messages[-1]["content"][-1]["text"] == "Compare these"
    assert [m.text for m in telegram.bot_messages(user.id)] == ["Hello there."]


async def test_refusals_are_short_clear_and_free(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    cases = [
        (telegram.send_sticker(user.id), "I can't read stickers"),
        (telegram.send_voice(user.id), "I can't listen to voice"),
        (telegram.send_video(user.id), "I can't watch videos"),
        (
            telegram.send_document(user.id, b"PK\x03\x04", file_name="a.zip", mime_type="application/zip"),
            "I read pictures (JPEG, PNG, WebP, GIF), PDFs and text files",
        ),
        (
            telegram.send_document(user.id, b"%PDF-1.4", file_name="a.pdf", mime_type="application/pdf"),
            "I could not read the PDF a.pdf",
        ),
        (
            telegram.send_document(
                user.id, b"x", file_name="huge.png", mime_type="image/png", file_size=30 * 2**20
            ),
            "This file is too large (30.0 MB). Please send one under 20 MB.",
        ),
        (
            telegram.send_text(user.id, "x" * (harness.settings.text_limit + 1)),
            f"The message is too long ({harness.settings.text_limit + 1} characters): the model reads up to "
            f"{harness.settings.text_limit} at once",
        ),
        (
            telegram.send_document(
                user.id, b"not an image at all", file_name="fake.png", mime_type="image/png"
            ),
            "This doesn't look like a picture",
        ),
        (
            telegram.send_document(user.id, png()[:60], file_name="cut.png", mime_type="image/png"),
            "The picture seems damaged or incomplete",
        ),
    ]
    for send, expected in cases:
        sent = await send
        await harness.pump()
        [reply] = await bot_texts(telegram, user.id, sent.message_id)
        assert expected in reply
    assert scripted.jobs == []
    assert await harness.redis.zcard(keys.rate_log(user.id)) == 0  # refused turns are not counted
    assert await harness.access.inflight(user.id) is None  # and nothing is left in flight


async def test_too_many_pixels(harness, telegram, scripted):
    pictures = harness.turns.content.pictures
    pictures.limits = type(pictures.limits)(max_pixels=100 * 100)
    user = await telegram.create_user(language_code="en")
    sent = await telegram.send_document(user.id, png(300, 300), file_name="big.png", mime_type="image/png")
    await harness.pump()
    assert "too many pixels" in (await bot_texts(telegram, user.id, sent.message_id))[0]


async def test_album_with_too_many_pictures(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await telegram.send_album(user.id, [png(color=(i * 40, 0, 0)) for i in range(6)], caption="All of them?")
    await harness.pump()
    assert scripted.jobs == []
    assert "more pictures than I can take" in telegram.bot_messages(user.id)[0].text


async def test_groups_answer_mentions_and_replies_only_with_a_dialog_per_user(harness, telegram, scripted):
    ann = await telegram.create_user(first_name="Ann", language_code="en")
    bob = await telegram.create_user(first_name="Bob", language_code="en")
    group = await telegram.create_group("Friends", [ann.id, bob.id])
    await telegram.send_text(ann.id, "just chatting", chat_id=group.id)
    await harness.pump()
    assert telegram.bot_messages(group.id) == [] and scripted.jobs == []

    await telegram.send_text(ann.id, f"@{BOT_USERNAME} what is a cat?", chat_id=group.id)
    await telegram.send_photo(bob.id, png(), caption=f"@{BOT_USERNAME} and this?", chat_id=group.id)
    await harness.pump()
    await harness.finish_answers()
    answer = telegram.bot_messages(group.id)[0]
    await telegram.send_text(ann.id, "tell me more", chat_id=group.id, reply_to=answer.message_id)
    await harness.pump()
    await harness.finish_answers()

    by_question = {job.messages[-1]["content"][-1]["text"]: job for job in scripted.jobs}
    assert set(by_question) == {"what is a cat?", "and this?", "tell me more"}  # the mention is gone
    follow_up = by_question["tell me more"]
    assert [m["content"][-1]["text"] for m in follow_up.messages if m["role"] == "user"] == [
        "what is a cat?",
        "tell me more",
    ]  # Ann's dialog only: nothing of Bob's
    assert not image_parts(follow_up)
    assert len(await harness.dialogs.messages(group.id, ann.id)) == 4
    assert len(await harness.dialogs.messages(group.id, bob.id)) == 2


async def test_question_in_reply_to_someone_elses_photo(harness, telegram, scripted):
    ann = await telegram.create_user(language_code="en")
    bob = await telegram.create_user(language_code="en")
    group = await telegram.create_group("Pics", [ann.id, bob.id])
    photo = await telegram.send_photo(bob.id, png(), chat_id=group.id)
    await telegram.send_text(
        ann.id, f"@{BOT_USERNAME} what is on it?", chat_id=group.id, reply_to=photo.message_id
    )
    await harness.pump()
    await harness.finish_answers()
    assert len(image_parts(scripted.jobs[0])) == 1


async def test_one_answer_in_flight_per_user_and_one_waiting_turn(harness, telegram, redis_url):
    slow = [protocol.delta_event("Working"), {"sleep": 0.5}, protocol.done_event("Working on it.", "stop", 3)]
    async with ScriptedWorker(redis_url, lambda job: slow) as worker:
        user = await telegram.create_user(language_code="en")
        for i in range(5):
            await telegram.send_text(user.id, f"question {i}")
        await harness.pump()  # all five at once: one is answered, one waits, three are turned away
        replies = [m.text for m in telegram.bot_messages(user.id)]
        assert replies.count(QUEUED) == 1  # the user is told their message is the next turn
        assert replies.count(BUSY) == 1  # told once per answer in flight, however many messages follow
        await harness.finish_answers()
        assert len(worker.jobs) == 2  # the waiting turn was asked as soon as the first answer was done
        asked = [job.messages[-1]["content"][-1]["text"] for job in worker.jobs]
        assert asked[0].startswith("question ") and asked[1].startswith("question ") and asked[0] != asked[1]
        assert [m["role"] for m in worker.jobs[1].messages] == ["user", "assistant", "user"]  # in the dialog
        for i in range(3):
            await telegram.send_text(user.id, f"next one {i}")
        await harness.pump()
        await harness.finish_answers()
        assert len(worker.jobs) == 4  # free again once the answers were done
        assert [m.text for m in telegram.bot_messages(user.id)].count(BUSY) == 2  # a new answer: told again
    assert harness.metrics.refusals.labels(reason="busy")._value.get() == 4  # every refusal is counted
    assert harness.metrics.waiting_turns._value.get() == 2
    assert await harness.redis.exists(keys.waiting_turn(user.id)) == 0

async def test_a_flood_from_a_limited_user_gets_one_notice_per_window(harness, telegram, scripted):
    user = await telegram.create_user(language_code="en")
    await harness.access.set_limit(user.id, "1/hour")
    await telegram.send_text(user.id, "the one question allowed")
    await harness.pump()
    await harness.finish_answers()
    before = len(telegram.bot_messages(user.id))
    for i in range(30):
        await telegram.send_text(user.id, f"spam {i}")
    await harness.pump()
    notices = [m.text for m in telegram.bot_messages(user.id)[before:]]
    assert len(notices) == 1 and notices[0].startswith("You have reached your limit of 1/hour")
    assert len(scripted.jobs) == 1
    await harness.redis.delete(keys.notice(user.id, "limited"))  # as when the window has passed
    await telegram.send_text(user.id, "again")
    await harness.pump()
    assert len(telegram.bot_messages(user.id)) == before + 2


async def test_a_failure_mid_turn_frees_the_user_and_says_so(harness, telegram, scripted, monkeypatch):
    async def broken(*args):
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(harness.dialogs, "messages", broken)
    user = await telegram.create_user(language_code="en")
    await telegram.send_text(user.id, "hello")
    await harness.pump()
    [text] = [m.text for m in telegram.bot_messages(user.id)]  # the placeholder says it, once
    assert "Something went wrong on my side" in text and "Redis" not in text
    assert await harness.access.inflight(user.id) is None  # not stuck "busy"
    assert await harness.redis.zcard(keys.rate_log(user.id)) == 0  # and not charged
    assert harness.metrics.errors.labels(where="turn")._value.get() == 1

"""Bot API calls one answer costs, streamed by edits (before issue 12, and groups now) and as a draft (private
chats now). The real bot against the local Bot API server with real Redis; a scripted worker streams the
same answer to both: DELTAS pieces, one every PAUSE_S seconds (about 10 s of text, 20 words).

    python bench/answer_calls.py     # needs Redis on 127.0.0.1:6379; takes a free test database

Prints the calls to the chat by method, for one private-chat answer each way, and for a group answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_bot_api import LocalBotAPI  # noqa: E402
from model import protocol  # noqa: E402
from tests.bot_harness import BOT_USERNAME, BotUnderTest, ScriptedWorker  # noqa: E402
from tests.conftest import REDIS_HOST, REDIS_PORT, acquire_db, release_db  # noqa: E402

DELTAS, PAUSE_S = 20, 0.5


def script(job: protocol.Job) -> list[dict]:
    events: list[dict] = []
    for i in range(DELTAS):
        events += [protocol.delta_event(f"word{i} "), {"sleep": PAUSE_S}]
    return [*events, protocol.done_event(" ".join(f"word{i}" for i in range(DELTAS)), "stop", DELTAS)]


async def one_answer(redis_url: str, drafts: bool, group: bool) -> Counter:
    async with LocalBotAPI(bot_username=BOT_USERNAME) as server:
        bot = BotUnderTest(server, redis_url, stream_drafts=drafts)
        try:
            async with ScriptedWorker(redis_url, script):
                user = await server.create_user(language_code="en")
                chat_id = user.id
                if group:
                    chat_id = (await server.create_group("Bench", [user.id])).id
                    await server.send_text(user.id, f"@{BOT_USERNAME} tell me", chat_id=chat_id)
                else:
                    await server.send_text(user.id, "tell me")
                await bot.pump()
                await bot.finish_answers(60)
            return Counter(r.method for r in server.call_log if r.chat_id == chat_id and r.status == 200)
        finally:
            await bot.stop()
            await bot.redis.flushdb()


async def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    db = acquire_db()
    try:
        for label, drafts, group in [
            ("private chat, edits (before)", False, False),
            ("private chat, draft (now)", True, False),
            ("group, edits (before and now)", True, True),
        ]:
            calls = await one_answer(f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}", drafts, group)
            messages = calls["sendMessage"] + calls["editMessageText"]
            print(f"{label}: {dict(sorted(calls.items()))}; messages sent or edited: {messages}")
    finally:
        release_db(db)


if __name__ == "__main__":
    asyncio.run(main())

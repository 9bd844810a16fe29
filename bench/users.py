"""Simulated people for load and fault runs: each chats with the bot through the local Bot API server (a photo
with a question, then a follow-up), and every turn is judged from what the person saw in their chat:

- answered: the bot's last message for the turn is an answer (not a status line, not a bot notice);
- told: it is a notice that says what happened (an error, "send /retry", "still answering"...);
- lost: nothing, or a status line ("⏳ Thinking…") that never turned into anything;
- duplicates: more than one final message for the same turn.

The text classes come from bot/locales.py, so a reworded message cannot turn a lost turn into a told one.
"""

from __future__ import annotations

import asyncio
import html
import io
import random
import re
import statistics
import time
from dataclasses import dataclass, field

import redis
from PIL import Image, ImageDraw

from bench.stack import Stack
from bot import keys
from bot.locales import TEXTS
from local_bot_api import StoredMessage


def _prefix(template: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", "", template))
    return text.split("{", 1)[0].strip()


def _prefixes(wanted) -> tuple[str, ...]:
    found = {_prefix(t) for texts in TEXTS.values() for k, t in texts.items() if wanted(k)}
    return tuple(p for p in found if len(p) >= 8)


RELEASE_GRACE_S = 30.0  # see Crowd.turn

STATUS = _prefixes(lambda key: key.startswith("status."))
NOTICE = _prefixes(lambda key: not key.startswith("status.") and key != "answer.empty")


def classify(text: str | None) -> str:
    """'status' (still waiting), 'notice' (the bot telling the user something), or 'answer'."""
    text = (text or "").strip()
    if text.startswith(STATUS):
        return "status"
    if text.startswith(NOTICE):
        return "notice"
    return "answer"


def photo(seed: int) -> bytes:
    """A small picture of its own per user, so every photo costs the worker a real image encode."""
    rng = random.Random(seed)
    image = Image.new("RGB", (320, 240), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(280), rng.randrange(200)
        draw.ellipse((x, y, x + rng.randrange(20, 90), y + rng.randrange(20, 90)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Turn:
    user_id: int
    kind: str  # photo | text
    message_id: int
    sent_at: float  # time.monotonic(): the server runs in this process, so its clock is ours
    settled_at: float | None = None  # when the person saw it finished (None: never)
    # judged at the end, from the final transcript:
    outcome: str = "lost"  # answered | told | lost
    finals: int = 0
    done_at: float | None = None  # the bot's last send/edit for this turn

    @property
    def latency(self) -> float | None:
        return self.done_at - self.sent_at if self.done_at is not None else None


@dataclass
class Crowd:
    """N people chatting at once. `turns` collects every turn sent."""

    stack: Stack
    turn_timeout_s: float = 120.0
    think_s: tuple[float, float] = (0.5, 2.0)
    turns: list[Turn] = field(default_factory=list)
    first_user_id: int = 700_000_001

    async def run(self, users: int, ramp_s: float, stop_at: float | None = None) -> None:
        """Every user: a photo with a question, then a follow-up text. Users start spread over `ramp_s`.
        With `stop_at` (monotonic), users keep chatting (follow-ups) until then."""
        await asyncio.gather(*(self._person(i, ramp_s * i / max(users, 1), stop_at) for i in range(users)))

    async def _person(self, index: int, delay: float, stop_at: float | None) -> None:
        user_id = self.first_user_id + index
        rng = random.Random(user_id)
        await asyncio.sleep(delay)
        await self.stack.server.create_user(user_id=user_id, first_name=f"User{index}", language_code="en")
        if not await self.turn(user_id, photo=photo(user_id), text="What is in this picture?"):
            return
        follow_ups = 0
        while follow_ups == 0 or (stop_at is not None and time.monotonic() < stop_at):
            await asyncio.sleep(rng.uniform(*self.think_s))
            follow_ups += 1
            if not await self.turn(user_id, text=f"Tell me more, please ({follow_ups})."):
                return

    async def turn(self, user_id: int, text: str, photo: bytes | None = None) -> bool:
        """Send one turn and wait until it looks finished to the person; False if it never did."""
        sent_at = time.monotonic()
        server = self.stack.server
        if photo is not None:
            message = await server.send_photo(user_id, photo, caption=text)
        else:
            message = await server.send_text(user_id, text)
        turn = Turn(user_id, "photo" if photo else "text", message.message_id, sent_at)
        self.turns.append(turn)
        deadline = sent_at + self.turn_timeout_s
        while time.monotonic() < deadline:
            try:
                await server.wait_for(lambda: self.shown(turn), deadline - time.monotonic())
            except TimeoutError:
                break
            if await self.released(user_id):
                turn.settled_at = time.monotonic()
                return True
            # The final edit is shown and the bot releases the user right after it: a user still held long
            # after that is stuck ("I am still answering..."), not slow.
            deadline = min(deadline, time.monotonic() + RELEASE_GRACE_S)
            await asyncio.sleep(0.1)
        return False

    def shown(self, turn: Turn) -> bool:
        """The bot's last message after the turn is no longer a status line."""
        later = [m for m in self.stack.server.bot_messages(turn.user_id) if m.message_id > turn.message_id]
        return bool(later) and classify(later[-1].text) != "status"

    async def released(self, user_id: int) -> bool:
        """The bot holds no answer in flight for this user (it releases them right after the final edit)."""
        try:
            return not await self.stack.redis.exists(keys.inflight(user_id))
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # Redis is restarting: ask again

    # --- judging -------------------------------------------------------------------------------------------
    async def settle(self, within_s: float, quiet_s: float = 30.0) -> list[int]:
        """After the chatting: wait until the bot holds none of these users, or has sent nothing to them for
        `quiet_s` (whatever it still holds then, it holds for good). Returns the users still held: "left
        busy", every message of theirs would get "I am still answering"."""
        users = sorted({t.user_id for t in self.turns})
        server = self.stack.server
        deadline = time.monotonic() + within_s
        while True:
            held = [u for u in users if not await self.released(u)]
            last = max((m.updated for u in held for m in server.bot_messages(u)), default=0.0)
            now = time.monotonic()
            if not held or now - last > quiet_s or now > deadline:
                return held
            await asyncio.sleep(0.5)

    def judge(self) -> None:
        """Judge every turn from the final transcripts. A turn owns the bot's messages between it and the
        same user's next turn."""
        by_user: dict[int, list[Turn]] = {}
        for turn in self.turns:
            by_user.setdefault(turn.user_id, []).append(turn)
        for user_id, turns in by_user.items():
            messages = self.stack.server.bot_messages(user_id)
            bounds = [t.message_id for t in turns[1:]] + [1 << 62]
            for turn, upper in zip(turns, bounds, strict=True):
                own = [m for m in messages if turn.message_id < m.message_id < upper]
                _judge_turn(turn, own)


def _judge_turn(turn: Turn, own: list[StoredMessage]) -> None:
    kinds = [classify(m.text) for m in own]
    finals = [m for m, k in zip(own, kinds, strict=True) if k != "status"]
    turn.finals = len(finals)
    if not finals or kinds[-1] == "status":
        turn.outcome = "lost"
        return
    turn.outcome = "answered" if kinds[-1] == "answer" else "told"
    turn.done_at = max(m.updated for m in own)


@dataclass
class Figures:
    turns: int
    answered: int
    told: int
    lost: int
    duplicates: int
    stuck: int  # users the bot still held ("I am still answering") long after their last answer
    seconds: float
    latencies: list[float]

    @classmethod
    def of(cls, turns: list[Turn], seconds: float, stuck_users: int = 0) -> Figures:
        outcomes = [t.outcome for t in turns]
        return cls(
            turns=len(turns),
            answered=outcomes.count("answered"),
            told=outcomes.count("told"),
            lost=outcomes.count("lost"),
            duplicates=sum(max(0, t.finals - 1) for t in turns),
            stuck=stuck_users,
            seconds=seconds,
            latencies=sorted(t.latency for t in turns if t.outcome == "answered" and t.latency is not None),
        )

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(share * 100) - 1]

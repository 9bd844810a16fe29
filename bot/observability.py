"""Metrics (Prometheus) and logs (one JSON object per line, user ids hashed, the token never printed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sys
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class BotMetrics:
    """The bot's metrics in a registry of their own: several bots in one process (tests) do not collide,
    and nothing lives at module level."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter("bot_updates_total", "Updates handled, by kind", ["kind"], registry=r)
        self.turns = Counter("bot_turns_total", "Turns queued for the model", registry=r)
        self.replies = Counter("bot_replies_total", "Answers finished, by outcome", ["outcome"], registry=r)
        self.refusals = Counter(
            "bot_refusals_total", "Turns refused before queueing, by reason", ["reason"], registry=r
        )
        self.errors = Counter("bot_errors_total", "Failures, by where they happened", ["where"], registry=r)
        self.telegram_retry_after = Counter(
            "bot_telegram_retry_after_total", "429 answers from Telegram", registry=r
        )
        self.reply_latency = Histogram(
            "bot_reply_latency_seconds",
            "From the user's message to the final answer",
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
        )
        self.first_text_latency = Histogram(
            "bot_first_text_latency_seconds",
            "From the user's message to the first streamed text",
            registry=r,
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
        )
        self.inflight = Gauge("bot_answers_in_flight", "Answers being delivered right now", registry=r)
        self.waiting_turns = Counter(
            "bot_waiting_turns_total", "Messages kept as the next turn while an answer was written", registry=r
        )
        self.feedback = Counter(
            "bot_feedback_total", "👍/👎 reactions users put on answers", ["reaction"], registry=r
        )
        self.buttons = Counter("bot_buttons_total", "Inline button presses, by action", ["action"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def start_metrics_server(metrics: BotMetrics, host: str, port: int) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner


class UserHasher:
    """Stable pseudonyms for user ids in logs. Keyed with a digest of the bot token: a plain hash of a
    Telegram id is reversible by trying all ~10^10 ids, a keyed one is not without the key."""

    def __init__(self, secret: str):
        self._key = hashlib.sha256(b"omnifusion-log-ids:" + secret.encode()).digest()

    def __call__(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        return hmac.new(self._key, str(user_id).encode(), hashlib.sha256).hexdigest()[:12]


_CHAT_ID = re.compile(r"\b(chat_id|user_id|user id|from user)(=| )(-?\d{3,})")
# A bot token is `<bot id>:<35 characters>`. Anything shaped like one is scrubbed too: a token of another bot,
# or ours before the settings that hold it could be read.
_TOKEN_LIKE = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")


def redact_token_like(text: str) -> str:
    return _TOKEN_LIKE.sub("<secret>", text)


class RedactSecrets(logging.Filter):
    """Scrubs every log record, ours and the libraries': secrets (the bot token, which is part of every API
    and file URL, and may appear in aiohttp's exception text) become <secret>, and the chat/user ids that
    aiogram's debug lines print become the same hashes our own lines use."""

    def __init__(self, *secrets: str, hash_user: UserHasher | None = None):
        super().__init__()
        # A token's part after the colon is the secret; it is scrubbed on its own too, for text that quotes
        # the token percent-encoded (":" as %3A) or cut at the colon.
        halves = [half for s in secrets if len(half := s.partition(":")[2]) >= 8]
        self._secrets = sorted({s for s in [*secrets, *halves] if s}, key=len, reverse=True)
        self._hash = hash_user

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        text = redact_token_like(text)
        if self._hash:
            text = _CHAT_ID.sub(lambda m: f"{m.group(1)}{m.group(2)}#{self._hash(int(m.group(3)))}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        record.msg, record.args = self._scrub(record.getMessage()), None
        return True


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", ...extra fields}: grep-able by humans, parseable by Loki/ELK."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str, token: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(token, hash_user=UserHasher(token)))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings go through the same scrubbing (and stay one JSON per line)


def elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)

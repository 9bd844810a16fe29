"""The bot's settings: environment variables (and `.env`), validated once at start. See docs/bot.md.

Everything has a default except BOT_TOKEN, so `python -m bot` with just a token is a working bot.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.observability import redact_token_like
from model.config import PRESETS

# Characters per token the text limit assumes: Mistral's tokenizer gives about 3-4 for English and 2-3 for
# Russian, so 2 is on the safe side. A text past the limit would only make the worker drop older turns or
# answer `too_long`; the limit exists so that the user hears it first, with the number.
CHARS_PER_TOKEN = 2

WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_limit(text: str) -> tuple[int, int]:
    """'20/hour' -> (20, 3600). Raises ValueError with a message fit for people."""
    # The value is never echoed: a secret pasted into the wrong variable would end up in the log.
    count, sep, window = text.strip().lower().partition("/")
    if not sep or window not in WINDOWS or not count.isdigit():
        raise ValueError("a limit looks like 20/hour (N/minute, N/hour or N/day)")
    if not 0 < int(count) <= 1_000_000:
        raise ValueError("the number of turns must be between 1 and 1000000")
    return int(count), WINDOWS[window]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- contract variables ---------------------------------------------------------------------------
    bot_token: SecretStr
    telegram_api_url: str | None = None  # a self-hosted telegram-bot-api or the local playground server
    redis_url: str = "redis://localhost:6379/0"
    redis_max_connections: int = Field(100, ge=4)  # beyond it, Redis calls wait for a free connection
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()

    # --- conversation -----------------------------------------------------------------------------------
    default_rate_limit: str = "30/hour"  # turns per user; admins change it at run time with /setlimit
    dialog_max_turns: int = Field(10, ge=1, le=100)  # question+answer pairs kept as context
    dialog_ttl_s: int = Field(7 * 86400, ge=60)  # a dialog nobody touches for this long is forgotten
    system_prompt: str = ""  # optional system message put before every dialog
    # The model's context in tokens (the tiny preset 2048, omnifusion-1.1 4096, demo 1024) when no live worker
    # says which model it runs: the text limit follows it unless MAX_TEXT_CHARS is set.
    model_context_tokens: int = Field(PRESETS["tiny"].llm_max_context, ge=256)
    max_text_chars: int | None = Field(None, ge=1)  # unset: (context - MAX_NEW_TOKENS) x 2 characters
    # Telegram splits a long paste into several messages: a message this long waits PASTE_WAIT_S for the rest.
    paste_min_chars: int = Field(3500, ge=1)
    paste_wait_s: float = Field(1.5, gt=0)
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1, le=20 * 1024 * 1024)  # getFile cannot go above 20 MB
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_images_per_turn: int = Field(4, ge=1, le=10)  # an album has up to 10 items
    album_wait_s: float = Field(0.8, gt=0)  # album items arrive as separate updates: wait this long for more
    document_max_pages: int = Field(30, ge=1)  # PDF pages read at most (the rest is left out, with a note)
    document_timeout_s: float = Field(15.0, gt=0)  # reading one document, in a separate process, at most

    # --- jobs ---------------------------------------------------------------------------------------------
    job_timeout_s: float = Field(600, gt=0)  # the job's deadline: a turn waits for a worker this long at most
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)

    # --- Telegram output ----------------------------------------------------------------------------------
    edit_interval_private_s: float = Field(1.0, ge=0)  # Telegram: about one message per second per chat
    edit_interval_group_s: float = Field(3.0, ge=0)  # and 20 per minute in a group
    message_max_chars: int = Field(4096, ge=100, le=4096)  # longer answers continue in further messages
    # Sends and edits per second for the whole bot, under Telegram's ~30/s: finals wait, progress edits skip.
    max_messages_per_second: float = Field(25, gt=0)
    # Private chats stream the answer as a draft (sendMessageDraft, Bot API 9.3+) with a stop button and
    # persist it with one sendMessage; false (or a server without drafts) edits a placeholder, as in groups.
    stream_drafts: bool = True

    # --- running --------------------------------------------------------------------------------------------
    webhook_url: str | None = None  # public https URL Telegram posts to; unset = long polling
    webhook_path: str = "/webhook"
    webhook_host: str = "127.0.0.1"  # behind a reverse proxy on the same host; compose sets 0.0.0.0
    webhook_port: int = 8080
    # Checked against the X-Telegram-Bot-Api-Secret-Token header; random on each start if unset.
    webhook_secret: SecretStr | None = None
    metrics_port: int | None = 9101  # Prometheus /metrics; 0 or empty disables it
    metrics_host: str = "127.0.0.1"  # reachable from this host only; compose sets 0.0.0.0 in its network
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"  # json: one object per line

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
            if not all(re.fullmatch(r"-?\d{1,19}", part) for part in parts):
                raise ValueError("ADMIN_IDS is a comma-separated list of numeric Telegram user ids")
            return frozenset(int(part) for part in parts)
        if isinstance(value, int):
            return frozenset([value])
        return value

    @field_validator("default_rate_limit")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        parse_limit(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "telegram_api_url", "webhook_url", "webhook_secret", "metrics_port", "max_text_chars", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("bot_token")
    @classmethod
    def _token_given(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("BOT_TOKEN is empty: get one from @BotFather (or run `make demo` without it)")
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.metrics_port == 0:
            self.metrics_port = None
        return self

    @property
    def default_limit(self) -> tuple[int, int]:
        return parse_limit(self.default_rate_limit)

    @property
    def image_ttl_s(self) -> int:
        # Images must outlive every dialog and job that may still refer to them.
        return self.dialog_ttl_s + int(self.job_timeout_s) + 3600

    def text_limit_for(self, context_tokens: int | None = None) -> int:
        """Characters a turn's text may have: what fits the model's context (the live workers' model, else
        MODEL_CONTEXT_TOKENS) beside the answer, unless MAX_TEXT_CHARS says otherwise."""
        if self.max_text_chars is not None:
            return self.max_text_chars
        context = context_tokens or self.model_context_tokens
        return max(500, (context - self.max_new_tokens) * CHARS_PER_TOKEN)

    @property
    def text_limit(self) -> int:
        return self.text_limit_for()

    @property
    def generation_params(self) -> dict[str, float | int]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p}


def describe_settings_error(error: ValidationError | SettingsError) -> str:
    """Bad settings, for people: which variable and why, never the value given (a token pasted into the wrong
    variable would be printed), and anything that still looks like a bot token scrubbed."""
    if isinstance(error, SettingsError):
        return redact_token_like(f"the bot's settings could not be read: {error}")
    lines = ["the bot's settings are invalid (every setting is described in .env.example):"]
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        name = ".".join(str(part) for part in problem["loc"]).upper() or "settings"
        lines.append(f"  {name}: {problem['msg']}")
    return redact_token_like("\n".join(lines))

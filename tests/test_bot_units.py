"""Small pieces without Telegram: texts, settings, logging hygiene."""

from __future__ import annotations

import json
import logging
import re
import string

import pytest
from pydantic import ValidationError

from bot.formatting import to_html
from bot.i18n import Translator, pick_language
from bot.locales import TEXTS
from bot.observability import JsonFormatter, RedactSecrets, UserHasher
from bot.settings import Settings, parse_limit
from local_bot_api.formatting import format_text
from model.images import IMAGE_ERROR_CODES
from model.protocol import ERROR_CODES

TOKEN = "123456:SECRET-token_abc"


def fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_language_has_the_same_keys_and_fields():
    english = TEXTS["en"]
    for language, texts in TEXTS.items():
        assert texts.keys() == english.keys(), language
        for key, template in texts.items():
            assert fields_of(template) == fields_of(english[key]), (language, key)


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_every_text_is_valid_telegram_html(language):
    t = Translator(language)
    for key, template in TEXTS[language].items():
        filled = t(key, **{name: "<x&y>" for name in fields_of(template)})  # fields are escaped
        format_text(filled, "HTML")


def test_image_errors_have_texts():
    for code in IMAGE_ERROR_CODES:
        assert Translator("ru").has(f"image.{code}") and Translator("en").has(f"image.{code}")


def test_worker_errors_that_users_can_act_on_have_texts():
    for code in (
        "expired",
        "image_missing",
        "bad_image",
        "too_many_images",
        "too_long",
        "internal",
        "dead_letter",
    ):
        assert code in ERROR_CODES and Translator("en").has(f"error.{code}")
    assert "bad_job" in Translator("en")("error.other", code="bad_job")


@pytest.mark.parametrize(
    ("code", "language"),
    [("ru", "ru"), ("ru-RU", "ru"), ("en-GB", "en"), (None, "en"), ("de", "en"), ("", "en")],
)
def test_language_choice(code, language):
    assert pick_language(code) == language


def test_durations_round_up():
    en, ru = Translator("en"), Translator("ru")
    assert en.duration(0.2) == "1 s"
    assert en.duration(61) == "2 min"
    assert en.duration(3600 + 60 * 5) == "1 h 5 min"
    assert ru.duration(2 * 86400 + 10) == "2 дн 1 ч"
    assert en.limit(20, 3600) == "20/hour" and ru.limit(5, 60) == "5/минуту"


def test_user_text_is_escaped():
    assert Translator("en")("start", name="<b>Eve</b>").count("&lt;b&gt;Eve") == 1


@pytest.mark.parametrize(
    ("spec", "expected"), [("20/hour", (20, 3600)), ("1/minute", (1, 60)), (" 5/DAY ", (5, 86400))]
)
def test_parse_limit(spec, expected):
    assert parse_limit(spec) == expected


@pytest.mark.parametrize("spec", ["20", "20/week", "x/hour", "0/hour", "-1/hour", "20/", "/hour", "1.5/hour"])
def test_parse_limit_refuses(spec):
    with pytest.raises(ValueError):
        parse_limit(spec)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_IDS", "1, 2,3")
    monkeypatch.setenv("METRICS_PORT", "")
    monkeypatch.setenv("DEFAULT_RATE_LIMIT", "7/day")
    settings = Settings(_env_file=None)
    assert settings.admin_ids == {1, 2, 3}
    assert settings.metrics_port is None
    assert settings.default_limit == (7, 86400)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    assert settings.image_ttl_s > settings.dialog_ttl_s  # images outlive the dialogs that use them


def test_settings_refuse_bad_values(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    with pytest.raises(ValidationError):
        Settings(_env_file=None, default_rate_limit="lots")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, max_file_bytes=50 * 2**20)  # Telegram's getFile stops at 20 MB
    with pytest.raises(ValidationError, match="BOT_TOKEN is empty"):
        Settings(_env_file=None, bot_token=" ")
    monkeypatch.delenv("BOT_TOKEN")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_logs_never_show_the_token(caplog):
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "GET https://api/file/bot%s/photo.jpg failed", (TOKEN,), None
    )
    try:
        raise RuntimeError(f"boom at /bot{TOKEN}/getFile")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecrets(TOKEN).filter(record)
    line = JsonFormatter().format(record)
    assert TOKEN not in line and "<secret>" in line
    assert json.loads(line)["level"] == "ERROR"


def test_the_token_is_scrubbed_however_it_is_quoted():
    quoted = TOKEN.replace(":", "%3A")  # a proxy's error page echoing the request path, percent-encoded
    other = "987654321:AAAbbbCCCdddEEEfffGGGhhhIIIjjjKKKlll"  # another bot's token, or ours before settings
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "upstream said %s and %s", (quoted, other), None)
    RedactSecrets(TOKEN).filter(record)
    assert record.getMessage() == "upstream said 123456%3A<secret> and <secret>"  # the bot id is public


def test_ids_in_library_log_lines_are_hashed():
    hasher = UserHasher(TOKEN)
    record = logging.LogRecord(
        "aiogram",
        logging.DEBUG,
        __file__,
        1,
        "typing in chat_id=%d via bot id=%d",
        (913000001, 123456789),
        None,
    )
    RedactSecrets(TOKEN, hash_user=hasher).filter(record)
    assert record.getMessage() == f"typing in chat_id=#{hasher(913000001)} via bot id=123456789"


def test_user_ids_are_hashed_with_a_key():
    hasher = UserHasher(TOKEN)
    assert hasher(12345) == hasher(12345) != UserHasher("other")(12345)
    assert re.fullmatch(r"[0-9a-f]{12}", hasher(12345)) and "12345" not in hasher(12345)


def test_html_of_interface_and_model_text_differ():
    # interface texts are HTML already; model text is markdown and gets escaped
    assert to_html("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"

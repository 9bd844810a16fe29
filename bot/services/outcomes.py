"""How an answer ends in Telegram: the final text with its buttons, or a message saying what ended it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.formatting import has_visible_text
from bot.i18n import Translator
from bot.keyboards import answer_keyboard
from bot.services.message_chain import MessageChain

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    kind: str  # done | cancelled | error | expired | timeout | lost | chat_gone | failed
    text: str = ""
    finish: str = ""
    code: str = ""


async def show_outcome(
    record: dict[str, Any], outcome: Outcome, chain: MessageChain, t: Translator
) -> None:
    """The answer's last look: its text, or what ended it, with 🔄 and ✨ under it."""
    buttons = answer_keyboard(t, record["user_id"], record["job_id"])  # 🔄 and ✨ under every ending
    if outcome.kind == "done":
        await chain.show(outcome.text, markdown=True, final=True, if_empty=t("answer.empty"), keyboard=buttons)
        return
    if outcome.kind == "cancelled":
        body = outcome.text.strip()
        body = f"{body}\n\n{t('answer.cancelled')}" if has_visible_text(body) else t("answer.cancelled")
        await chain.show(body, markdown=True, final=True, if_empty=t("answer.cancelled"), keyboard=buttons)
        return
    if outcome.kind == "error":
        key = f"error.{outcome.code}"
        message = t(key) if t.has(key) else t("error.other", code=outcome.code)
    elif outcome.kind == "lost":
        message = t("answer.lost")
    else:
        message = t("answer.offline_expired" if outcome.kind == "expired" else "answer.timeout")
    await chain.show(message, markdown=False, final=True, keyboard=buttons)


async def show_failure(chain: MessageChain, t: Translator) -> None:
    """Best effort: the delivery itself failed (a bug, or Telegram/Redis failing for good)."""
    try:
        await chain.show(t("answer.failed"), markdown=False, final=True)
    except Exception:  # already failing; the log has the first error
        log.debug("could not show the failure either", exc_info=True)

"""Inline buttons and what their presses carry (callback data is at most 64 bytes: ids, never text).

Every button names its owner: only the person who asked may press it (handlers/buttons.py checks), and an
answer's buttons name its job, so a press on an older answer's buttons is recognised as stale.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import Translator


class AnswerAction(CallbackData, prefix="ans"):
    action: str  # stop | regen | new | old
    owner: int
    job: str  # the answer's job id, shortened: enough to tell answers apart


class SettingsChoice(CallbackData, prefix="set"):
    field: str  # length | creativity | language
    value: str
    owner: int


class ForgetChoice(CallbackData, prefix="fgt"):
    confirm: bool
    owner: int


JOB_CHARS = 12


def short_job(job_id: str) -> str:
    return job_id[:JOB_CHARS]


def _answer_button(t: Translator, action: str, owner: int, job_id: str) -> InlineKeyboardButton:
    data = AnswerAction(action=action, owner=owner, job=short_job(job_id)).pack()
    return InlineKeyboardButton(text=t(f"button.{action}"), callback_data=data)


def stop_keyboard(t: Translator, owner: int, job_id: str) -> InlineKeyboardMarkup:
    """Under an answer being written by edits (where Telegram's own stop button on drafts is not shown)."""
    return InlineKeyboardMarkup(inline_keyboard=[[_answer_button(t, "stop", owner, job_id)]])


def answer_keyboard(t: Translator, owner: int, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[_answer_button(t, "regen", owner, job_id), _answer_button(t, "new", owner, job_id)]]
    )


def replaced_keyboard(t: Translator, owner: int, job_id: str) -> InlineKeyboardMarkup:
    """Marks an answer that /retry (or 🔄) replaced; pressing it only says so."""
    return InlineKeyboardMarkup(inline_keyboard=[[_answer_button(t, "old", owner, job_id)]])


def forget_keyboard(t: Translator, owner: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("button.forget_yes"), callback_data=ForgetChoice(confirm=True, owner=owner).pack()
                ),
                InlineKeyboardButton(
                    text=t("button.forget_no"), callback_data=ForgetChoice(confirm=False, owner=owner).pack()
                ),
            ]
        ]
    )


def settings_keyboard(
    t: Translator, owner: int, current: dict[str, str], options: dict[str, tuple[str, ...]]
) -> InlineKeyboardMarkup:
    """One row per setting, the current choice ticked."""
    rows = []
    for field, values in options.items():
        rows.append(
            [
                InlineKeyboardButton(
                    text=("✓ " if current.get(field) == value else "") + t(f"settings.{field}.{value}"),
                    callback_data=SettingsChoice(field=field, value=value, owner=owner).pack(),
                )
                for value in values
            ]
        )
    return InlineKeyboardMarkup(inline_keyboard=rows)

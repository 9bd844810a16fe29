"""Redis keys the bot owns (the wire protocol's keys live in model.protocol; these are the bot's state).

All of them sit under `omnifusion:bot:` so an operator can tell them from the queue at a glance.
"""

from __future__ import annotations

from model.protocol import PREFIX

BOT = f"{PREFIX}:bot"

BANNED = f"{BOT}:banned"  # SET of user ids
USERS = f"{BOT}:users"  # SET of every user id that ever sent a turn (for /stats)
LIMIT_ALL = f"{BOT}:limit:all"  # "N/seconds" set by `/setlimit all`; overrides DEFAULT_RATE_LIMIT
INFLIGHT_PATTERN = f"{BOT}:inflight:*"


def dialog(chat_id: int, user_id: int) -> str:
    """LIST of JSON messages (the protocol's shape), oldest first."""
    return f"{BOT}:dialog:{chat_id}:{user_id}"


def dialog_session(chat_id: int, user_id: int) -> str:
    """Id of the current dialog; /new replaces it, so an answer to an older dialog is not appended."""
    return f"{BOT}:session:{chat_id}:{user_id}"


def last_question(chat_id: int, user_id: int) -> str:
    """JSON of the last user turn sent, for /retry."""
    return f"{BOT}:last:{chat_id}:{user_id}"


def limit(user_id: int) -> str:
    return f"{BOT}:limit:{user_id}"


def rate_log(user_id: int) -> str:
    """ZSET of admitted turn times (sliding window)."""
    return f"{BOT}:rate:{user_id}"


def inflight(user_id: int) -> str:
    """JSON of the user's answer being delivered: one at a time, and resumable after a bot restart."""
    return f"{BOT}:inflight:{user_id}"


def ban_notice(user_id: int) -> str:
    return f"{BOT}:ban-notice:{user_id}"


def notice(user_id: int, verdict: str) -> str:
    """A refusal (busy, limited) the user was told about; while it exists, further ones are not told."""
    return f"{BOT}:notice:{verdict}:{user_id}"


def turns_on(day: str) -> str:
    return f"{BOT}:turns:{day}"


def users_on(day: str) -> str:
    return f"{BOT}:users:{day}"

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


def waiting_turn(user_id: int) -> str:
    """JSON of the message(s) sent while an answer was being written: the user's next turn (one at most)."""
    return f"{BOT}:waiting:{user_id}"


def last_answer(chat_id: int, user_id: int) -> str:
    """JSON {job_id, message_id, question_id} of the latest finished answer: its buttons are the live ones."""
    return f"{BOT}:answer:{chat_id}:{user_id}"


def answer_message(chat_id: int, message_id: int | str) -> str:
    """The user id an answer message of the bot was for, so a 👍/👎 on it is known to be feedback."""
    return f"{BOT}:answer-msg:{chat_id}:{message_id}"


def preferences(user_id: int) -> str:
    """HASH of /settings choices: length, creativity, language."""
    return f"{BOT}:prefs:{user_id}"


def pictures_of(user_id: int) -> str:
    """SET of image keys this user sent (for /forget)."""
    return f"{BOT}:pictures:{user_id}"


def picture_senders(image_key: str) -> str:
    """SET of the user ids who sent this picture: /forget deletes a picture only when nobody else did."""
    return f"{BOT}:senders:{image_key.rsplit(':', 1)[-1]}"


def jobs_of(user_id: int) -> str:
    """LIST of the job stream entries of this user's turns (for /forget: they hold the dialog's text)."""
    return f"{BOT}:jobs:{user_id}"

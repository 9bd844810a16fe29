"""The control API, reading side: transcripts, command menus, waiting for the bot, call rates, faults.

Mixed into LocalBotAPI next to Control (control.py); HTTP twins in control_http.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ControlError
from .faults import COUNTED_METHODS, Fault
from .state import Chat, Draft, StoredMessage

if TYPE_CHECKING:
    from .server import LocalBotAPI

T = TypeVar("T")


class Observe:
    """Needs from its host: bots, events, call_log, faults, rate_limits, bot()."""

    # --- reading ----------------------------------------------------------------------------------------
    def chat(self: LocalBotAPI, chat_id: int, *, token: str | None = None) -> Chat:
        chat = self.bot(token).chats.get(chat_id)
        if chat is None:
            raise ControlError(f"no chat {chat_id}")
        return chat

    def transcript(self: LocalBotAPI, chat_id: int, *, token: str | None = None) -> list[StoredMessage]:
        """Every message of the chat in order, as its users see it (deleted ones flagged, edits kept)."""
        chat = self.bot(token).chats.get(chat_id)
        return list(chat.messages.values()) if chat else []

    def draft(self: LocalBotAPI, chat_id: int, *, token: str | None = None) -> Draft | None:
        """The bot's draft on screen in this chat (sendMessageDraft); None when there is none or it expired.
        `.text`, `.versions` (every text it showed), `.can_stop`, `.stopped`."""
        chat = self.bot(token).chats.get(chat_id)
        return chat.current_draft(self.draft_lifetime) if chat else None

    def bot_messages(
        self: LocalBotAPI, chat_id: int, *, token: str | None = None, deleted: bool = False
    ) -> list[StoredMessage]:
        return [m for m in self.transcript(chat_id, token=token) if m.from_bot and (deleted or not m.deleted)]

    def commands_for(
        self: LocalBotAPI,
        chat_id: int | None = None,
        user_id: int | None = None,
        language_code: str = "",
        *,
        token: str | None = None,
    ) -> list[dict[str, str]]:
        """The command menu this user sees in this chat: Telegram's scope order, language first."""
        bot = self.bot(token)
        chat = bot.chats.get(chat_id) if chat_id is not None else None
        if chat is None or not chat.is_group:
            scopes = [("chat", chat_id, None), ("all_private_chats", None, None), ("default", None, None)]
        else:
            is_admin = user_id in chat.admins
            scopes = [("chat_member", chat_id, user_id)]
            scopes += [("chat_administrators", chat_id, None)] if is_admin else []
            scopes += [("chat", chat_id, None)]
            scopes += [("all_chat_administrators", None, None)] if is_admin else []
            scopes += [("all_group_chats", None, None), ("default", None, None)]
        for kind, scope_chat, scope_user in scopes:
            for language in ([language_code] if language_code else []) + [""]:
                commands = bot.commands.get((kind, scope_chat, scope_user, language))
                if commands:
                    return commands
        return []

    # --- waiting ----------------------------------------------------------------------------------------
    async def wait_for(
        self: LocalBotAPI,
        predicate: Callable[[], T],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the whole wait
        what: str = "",
    ) -> T:
        """Returns predicate()'s first truthy value, re-checked on every change; TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waited {timeout:g} s for {what or 'a condition'}")
            await self.events.wait_changed(min(remaining, 0.25))

    async def wait_for_bot_message(
        self: LocalBotAPI,
        chat_id: int,
        *,
        after: int = 0,
        predicate: Callable[[StoredMessage], Any] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        token: str | None = None,
    ) -> StoredMessage:
        """The first (not deleted) bot message with message_id > after that satisfies predicate (checked
        again on every edit, so `lambda m: "done" in m.text` waits for a streamed answer to get there)."""

        def find() -> StoredMessage | None:
            for message in self.bot_messages(chat_id, token=token):
                if message.message_id > after and (predicate is None or predicate(message)):
                    return message
            return None

        return await self.wait_for(find, timeout, f"a bot message in chat {chat_id} after #{after}")

    async def wait_until_quiet(
        self: LocalBotAPI,
        chat_id: int,
        *,
        after: int = 0,
        quiet: float = 2.0,
        timeout: float = 30.0,  # noqa: ASYNC109
        token: str | None = None,
    ) -> list[StoredMessage]:
        """The bot's messages after #after once it has gone quiet in the chat: at least one message, no
        send/edit/delete/draft for `quiet` seconds, no chat action and no live draft showing. The streamed
        answer is final then."""

        def settled() -> list[StoredMessage] | None:
            chat = self.bot(token).chats.get(chat_id)
            if chat is None or chat.current_action() or time.monotonic() - chat.last_bot_activity < quiet:
                return None
            draft = chat.current_draft(self.draft_lifetime)
            if draft is not None and not draft.stopped:
                return None
            return [m for m in self.bot_messages(chat_id, token=token) if m.message_id > after] or None

        return await self.wait_for(settled, timeout, f"the bot to finish in chat {chat_id}")

    # --- counting ---------------------------------------------------------------------------------------
    def max_rate(
        self: LocalBotAPI,
        chat_id: int | None = None,
        window: float = 1.0,
        methods: Iterable[str] | None = None,
    ) -> int:
        """Most successful calls (default: sends and edits) within any `window` seconds, in one chat or all."""
        wanted = {m.lower() for m in methods} if methods is not None else COUNTED_METHODS
        stamps = [
            r.at
            for r in self.call_log
            if r.status == 200 and r.method.lower() in wanted and (chat_id is None or r.chat_id == chat_id)
        ]
        best, start = 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- faults and limits ------------------------------------------------------------------------------
    def inject_retry_after(
        self: LocalBotAPI,
        retry_after: int = 1,
        *,
        count: int | None = None,
        seconds: float | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer 429 "retry after N" to the next `count` calls (default 1) or for `seconds`."""
        return self.faults.add(
            "retry_after", method=method, count=count, seconds=seconds, retry_after=retry_after
        )

    def inject_server_error(
        self: LocalBotAPI,
        status: int = 500,
        *,
        count: int | None = None,
        seconds: float | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer 5xx to the next `count` calls (default 1) or for `seconds`."""
        return self.faults.add("server_error", method=method, count=count, seconds=seconds, status=status)

    def inject_delay(
        self: LocalBotAPI,
        delay: float,
        *,
        count: int | None = None,
        seconds: float | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer slowly: sleep `delay` seconds before handling matching calls."""
        return self.faults.add("delay", method=method, count=count, seconds=seconds, delay=delay)

    def clear_faults(self: LocalBotAPI) -> None:
        self.faults.clear()

    def set_rate_limits(self: LocalBotAPI, enabled: bool = True, **settings: Any) -> None:
        """Telegram's flood limits on/off; settings: private_per_second, private_burst, group_per_minute,
        group_burst, global_per_second."""
        self.rate_limits.configure(enabled=enabled, **settings)

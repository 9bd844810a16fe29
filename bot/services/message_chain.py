"""One answer shown as a chain of Telegram messages, never "message is too long".

Two ways to stream it. Edits: the placeholder is edited as text arrives, then further messages follow once
the text outgrows 4096 characters. A draft (private chats): the piece being written is the chat's draft
(sendMessageDraft, with Telegram's stop button), pieces already complete become messages, and the final text
is sent as messages, which also ends the draft. A draft that the server refuses turns the chain into the
edit kind on the spot: the piece being written goes out as a message and is edited from then on.

Buttons go on the last message: ⏹ Stop while an edited answer is written, 🔄/✨ once it is final.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram.types import InlineKeyboardMarkup

from bot.formatting import TELEGRAM_TEXT_LIMIT, clean, has_visible_text, split_markdown
from bot.services.outbox import DraftsUnavailable, Outbox, Skipped


class MessageChain:
    def __init__(
        self,
        outbox: Outbox,
        chat_id: int,
        message_ids: list[int],
        reply_to: int | None,
        thread_id: int | None,
        on_change: Callable[[MessageChain], Awaitable[None]],
        limit: int = TELEGRAM_TEXT_LIMIT,
        draft_id: int | None = None,
    ):
        self.outbox = outbox
        self.chat_id = chat_id
        self.message_ids = list(message_ids)
        self.reply_to = reply_to
        self.thread_id = thread_id
        self.on_change = on_change  # message ids or the draft changed: the caller persists them
        self.limit = limit
        self.draft_id = draft_id
        # (piece, buttons) each message shows; unknown after a bot restart
        self._shown: list[tuple[str, str] | None] = [None] * len(self.message_ids)

    async def show(
        self,
        text: str,
        *,
        markdown: bool,
        final: bool,
        if_empty: str = "…",
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> bool:
        """Make the chain show `text`, `keyboard` under its last message. A progress update (final=False) may
        be held back by pacing: returns False then, and the caller tries again later. A final one is always
        delivered (or raises ChatGone). Text with nothing visible in it is not sent; a final one shows
        `if_empty` (interface HTML) instead."""
        if markdown:
            pieces = [p for p in split_markdown(clean(text).strip(), self.limit) if has_visible_text(p)]
            if not pieces:
                if not final:
                    return True  # nothing to show yet
                pieces, markdown = [if_empty], False
        else:
            pieces = [text]
        try:
            for index, piece in enumerate(pieces):
                last = index == len(pieces) - 1
                if last and self.draft_id is not None and not final:
                    await self._show_draft(piece, markdown)
                else:
                    await self._show_piece(index, piece, markdown, final, keyboard if last else None)
        except Skipped:
            return False
        if final:
            await self._drop_extra(len(pieces))
        return True

    async def _show_draft(self, piece: str, markdown: bool) -> None:
        try:
            await self.outbox.draft(self.chat_id, self.draft_id, piece, markdown=markdown, thread_id=self.thread_id)
        except DraftsUnavailable:
            self.draft_id = None  # from now on this answer is an edited message, starting with this piece
            await self.on_change(self)
            await self._show_piece(len(self.message_ids), piece, markdown, False, None)

    async def _show_piece(
        self, index: int, piece: str, markdown: bool, final: bool, keyboard: InlineKeyboardMarkup | None
    ) -> None:
        shown = (piece, keyboard.model_dump_json() if keyboard else "")
        if index < len(self.message_ids):
            if self._shown[index] == shown:
                return
            # Earlier pieces are complete once a later one exists: deliver them for sure.
            essential = final or index < len(self.message_ids) - 1
            if not await self.outbox.edit(
                self.chat_id,
                self.message_ids[index],
                piece,
                markdown=markdown,
                essential=essential,
                keyboard=keyboard,
            ):
                # the user deleted this message: carry on in a new one rather than lose the answer
                self.message_ids[index] = await self._send(piece, markdown, keyboard)
                await self.on_change(self)
        else:
            self.message_ids.append(await self._send(piece, markdown, keyboard))
            self._shown.append(None)
            await self.on_change(self)
        self._shown[index] = shown

    async def _send(self, piece: str, markdown: bool, keyboard: InlineKeyboardMarkup | None) -> int:
        return await self.outbox.send(
            self.chat_id,
            piece,
            markdown=markdown,
            reply_to=self.reply_to,
            thread_id=self.thread_id,
            keyboard=keyboard,
        )

    async def _drop_extra(self, keep: int) -> None:
        """A restarted generation may end shorter than what was shown: remove the messages left over."""
        if len(self.message_ids) <= keep:
            return
        for message_id in self.message_ids[keep:]:
            await self.outbox.delete(self.chat_id, message_id)
        del self.message_ids[keep:], self._shown[keep:]
        await self.on_change(self)

"""One answer shown as a chain of Telegram messages: the placeholder, edited as text arrives, then further
messages once the text outgrows 4096 characters. Never "message is too long"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.formatting import TELEGRAM_TEXT_LIMIT, clean, has_visible_text, split_markdown
from bot.services.outbox import Outbox, Skipped


class MessageChain:
    def __init__(
        self,
        outbox: Outbox,
        chat_id: int,
        message_ids: list[int],
        reply_to: int | None,
        thread_id: int | None,
        on_new_message: Callable[[list[int]], Awaitable[None]],
        limit: int = TELEGRAM_TEXT_LIMIT,
    ):
        self.outbox = outbox
        self.chat_id = chat_id
        self.message_ids = list(message_ids)
        self.reply_to = reply_to
        self.thread_id = thread_id
        self.on_new_message = on_new_message
        self.limit = limit
        self._shown: list[str | None] = [None] * len(self.message_ids)  # unknown after a bot restart

    async def show(self, text: str, *, markdown: bool, final: bool, if_empty: str = "…") -> bool:
        """Make the chain show `text`. A progress update (final=False) may be held back by pacing: returns
        False then, and the caller tries again later. A final one is always delivered (or raises ChatGone).
        Text with nothing visible in it is not sent; a final one shows `if_empty` (interface HTML) instead."""
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
                await self._show_piece(index, piece, markdown=markdown, final=final)
        except Skipped:
            return False
        if final:
            await self._drop_extra(len(pieces))
        return True

    async def _show_piece(self, index: int, piece: str, *, markdown: bool, final: bool) -> None:
        if index < len(self.message_ids):
            if self._shown[index] == piece:
                return
            # Earlier pieces are complete once a later one exists: deliver them for sure.
            essential = final or index < len(self.message_ids) - 1
            if not await self.outbox.edit(
                self.chat_id, self.message_ids[index], piece, markdown=markdown, essential=essential
            ):
                # the user deleted this message: carry on in a new one rather than lose the answer
                self.message_ids[index] = await self._send(piece, markdown)
                await self.on_new_message(self.message_ids)
        else:
            self.message_ids.append(await self._send(piece, markdown))
            self._shown.append(None)
            await self.on_new_message(self.message_ids)
        self._shown[index] = piece

    async def _send(self, piece: str, markdown: bool) -> int:
        return await self.outbox.send(
            self.chat_id, piece, markdown=markdown, reply_to=self.reply_to, thread_id=self.thread_id
        )

    async def _drop_extra(self, keep: int) -> None:
        """A restarted generation may end shorter than what was shown: remove the messages left over."""
        if len(self.message_ids) <= keep:
            return
        for message_id in self.message_ids[keep:]:
            await self.outbox.delete(self.chat_id, message_id)
        del self.message_ids[keep:], self._shown[keep:]
        await self.on_new_message(self.message_ids)

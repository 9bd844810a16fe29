"""What a user can do to their conversation, by command or by button: stop the answer, start afresh."""

from __future__ import annotations

from bot.services.access import AccessControl
from bot.services.answers import AnswerRegistry
from bot.services.dialogs import DialogStore
from bot.services.jobs import JobSubmitter


class Conversation:
    def __init__(self, access: AccessControl, queue: JobSubmitter, dialogs: DialogStore, answers: AnswerRegistry):
        self.access = access
        self.queue = queue
        self.dialogs = dialogs
        self.answers = answers

    async def stop(self, user_id: int, job_id: str | None = None) -> str | None:
        """Ask the worker to stop the user's answer in flight (its delivery then shows "Stopped"). With
        `job_id` (a button, a draft's stop), only if that answer is still the one in flight. A message kept
        for later then becomes the next turn: it was written after the answer started, so it is still wanted.
        The job id of the answer stopped, or None."""
        record = await self.access.inflight(user_id)
        if record is None or (job_id is not None and not record["job_id"].startswith(job_id)):
            return None
        await self.queue.cancel(record["job_id"])
        return record["job_id"]

    async def start_afresh(self, chat_id: int, user_id: int) -> bool:
        """/new and ✨: forget the dialog, drop a message kept for later, stop the answer in flight (True if
        there was one), and take the buttons off the last answer."""
        await self.access.drop_waiting(user_id)
        stopped = await self.stop(user_id)
        await self.dialogs.reset(chat_id, user_id)
        await self.answers.retire(chat_id, user_id)
        return stopped is not None

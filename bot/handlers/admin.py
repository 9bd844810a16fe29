"""Admin commands (user ids in ADMIN_IDS). Anyone else gets a refusal, and nothing changes."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.filters import IsAdmin
from bot.i18n import Translator
from bot.menus import ADMIN_COMMANDS
from bot.services.access import AccessControl
from bot.services.delivery import AnswerDelivery
from bot.services.jobs import JobSubmitter
from bot.services.outbox import Outbox
from bot.settings import parse_limit


def _user_id(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() and len(text) < 20 else None


def create_router() -> Router:
    router = Router(name="admin")
    router.message.filter(Command(*ADMIN_COMMANDS))

    @router.message(~IsAdmin())
    async def refuse(message: Message, outbox: Outbox, t: Translator) -> None:
        await outbox.reply(message, t("admin.only"))

    @router.message(Command("setlimit"))
    async def set_limit(
        message: Message, command: CommandObject, access: AccessControl, outbox: Outbox, t: Translator
    ) -> None:
        args = (command.args or "").split()
        who = args[0].lower() if args else ""
        user_id = _user_id(who)
        if len(args) != 2 or (who != "all" and user_id is None):
            await outbox.reply(message, t("admin.usage.setlimit"))
            return
        target = None if who == "all" else user_id
        if args[1].lower() == "default":
            await access.set_limit(target, None)
            (count, window), _ = await access.effective_limit(target)
            await outbox.reply(message, t("admin.setlimit.reset", who=who, limit=t.limit(count, window)))
            return
        try:
            count, window = parse_limit(args[1])
        except ValueError:
            await outbox.reply(message, t("admin.usage.setlimit"))
            return
        await access.set_limit(target, args[1])
        await outbox.reply(message, t("admin.setlimit.done", who=who, limit=t.limit(count, window)))

    @router.message(Command("limits"))
    async def limits(
        message: Message, command: CommandObject, access: AccessControl, outbox: Outbox, t: Translator
    ) -> None:
        args = (command.args or "").split()
        if len(args) > 1 or (args and _user_id(args[0]) is None):
            await outbox.reply(message, t("admin.usage.limits"))
            return
        if args:
            user_id = _user_id(args[0])
            (count, window), source = await access.effective_limit(user_id)
            banned = t("admin.limits.banned") if await access.is_banned(user_id) else ""
            await outbox.reply(
                message,
                t(
                    "admin.limits.user",
                    user_id=user_id,
                    limit=t.limit(count, window),
                    source=t(f"admin.source.{source}"),
                    used=await access.used(user_id, window),
                    banned=banned,
                ),
            )
            return
        (count, window), source = await access.effective_limit(None)
        text = t("admin.limits.all", limit=t.limit(count, window), source=t(f"admin.source.{source}"))
        for user_id, (n, w) in sorted((await access.overrides()).items()):
            text += t("admin.limits.override", user_id=user_id, limit=t.limit(n, w))
        await outbox.reply(message, text)

    @router.message(Command("ban"))
    async def ban(
        message: Message, command: CommandObject, access: AccessControl, outbox: Outbox, t: Translator
    ) -> None:
        user_id = _user_id(command.args or "")
        if user_id is None:
            await outbox.reply(message, t("admin.usage.ban"))
        elif access.is_admin(user_id):
            await outbox.reply(message, t("admin.ban.admin"))
        else:
            await access.ban(user_id)
            await outbox.reply(message, t("admin.ban.done", user_id=user_id))

    @router.message(Command("unban"))
    async def unban(
        message: Message, command: CommandObject, access: AccessControl, outbox: Outbox, t: Translator
    ) -> None:
        user_id = _user_id(command.args or "")
        if user_id is None:
            await outbox.reply(message, t("admin.usage.unban"))
            return
        await access.unban(user_id)
        await outbox.reply(message, t("admin.unban.done", user_id=user_id))

    @router.message(Command("stats"))
    async def stats(
        message: Message,
        access: AccessControl,
        queue: JobSubmitter,
        delivery: AnswerDelivery,
        outbox: Outbox,
        t: Translator,
    ) -> None:
        numbers = await access.usage_today()
        state = await queue.state()
        await outbox.reply(
            message,
            t(
                "admin.stats",
                **numbers,
                waiting=state.waiting,
                running=state.running,
                workers=state.workers,
                inflight=delivery.active,
            ),
        )

    return router

"""The control API over HTTP (JSON under /_control/), for the playground page and out-of-process tests.

POST /_control/<action> takes the same arguments as the Python method of that name, as a JSON object or
as a form (multipart for file uploads: the file parts are `data`, or `photo`/`document`, several `photo`
parts for an album). Errors come back as {"ok": false, "error": "..."} with status 400.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import ControlError

if TYPE_CHECKING:
    from .server import LocalBotAPI

_INT_FIELDS = {
    "user_id",
    "chat_id",
    "reply_to",
    "message_id",
    "file_size",
    "duration",
    "retry_after",
    "status",
    "count",
    "channel_id",
}
_FLOAT_FIELDS = {"seconds", "delay", "timeout", "quiet"}
_BOOL_FIELDS = {"mention", "blocked", "bot_is_admin", "enabled", "reactions_enabled"}
# action (a method of LocalBotAPI) -> the parameter that receives uploaded file bytes, if any
_ACTIONS = {
    "create_user": None,
    "create_group": None,
    "send_text": None,
    "send_photo": "data",
    "send_album": "photos",
    "send_document": "data",
    "send_sticker": None,
    "send_voice": "data",
    "send_video": "data",
    "send_sample": None,
    "send_as_channel": None,
    "send_as_anonymous_admin": None,
    "press_button": None,
    "react": None,
    "stop_draft": None,
    "block": None,
    "set_playground": None,
    "inject_retry_after": None,
    "inject_server_error": None,
    "inject_delay": None,
    "clear_faults": None,
    "set_rate_limits": None,
}
_FILE_PARTS = ("data", "photo", "document", "voice", "video")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _typed(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _INT_FIELDS:
        return int(value) if value.strip() else None
    if key in _FLOAT_FIELDS:
        return float(value) if value.strip() else None
    if key in _BOOL_FIELDS:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


async def _arguments(request: web.Request, action: str) -> dict[str, Any]:
    """Keyword arguments from a JSON body (files as *_base64) or a form (files as parts)."""
    file_param = _ACTIONS[action]
    args: dict[str, Any] = {}
    files: list[tuple[str, bytes, str]] = []
    if request.content_type == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise ControlError("the body must be a JSON object")
        for key, value in body.items():
            if key.endswith("_base64"):
                decoded = (
                    [base64.b64decode(v) for v in value]
                    if isinstance(value, list)
                    else base64.b64decode(value)
                )
                args[key.removesuffix("_base64")] = decoded
            else:
                args[key] = value
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files.append((key, value.file.read(), value.content_type))
                if action == "send_document":
                    args.setdefault("file_name", value.filename)
                    if value.content_type and value.content_type != "application/octet-stream":
                        args.setdefault("mime_type", value.content_type)
            else:
                args[key] = _typed(key, value)
    if file_param == "photos" and files:
        args["photos"] = [data for key, data, _ in files if key in ("photo", "photos", "data")]
    elif file_param and files:
        uploaded = next((data for key, data, _ in files if key in _FILE_PARTS), None)
        if uploaded is None:
            raise ControlError(f"name the file part one of {', '.join(_FILE_PARTS)}")
        args[file_param] = uploaded
    return {key: _typed(key, value) for key, value in args.items()}


def _result(value: Any) -> Any:
    if isinstance(value, list):
        return [_result(v) for v in value]
    if hasattr(value, "to_json"):
        return value.to_json()
    if value is None:
        return True
    return value


@web.middleware
async def _control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as error:
        if not request.path.startswith("/_control/"):
            raise
        return _json({"ok": False, "error": str(error)}, 400)


def setup_control_routes(app: web.Application, api: LocalBotAPI) -> None:
    app.middlewares.append(_control_errors)

    async def action(request: web.Request) -> web.Response:
        name = request.match_info["action"]
        if name not in _ACTIONS:
            return _json({"ok": False, "error": f"unknown control action {name!r}"}, 404)
        try:
            args = await _arguments(request, name)
            result = await _maybe_await(getattr(api, name)(**args))
        except (ControlError, TypeError, ValueError, KeyError) as error:
            return _json({"ok": False, "error": str(error)}, 400)
        return _json({"ok": True, "result": _result(result)})

    async def bot_info(request: web.Request) -> web.Response:
        bot = api.bot(request.query.get("token"))
        commands = [{"scope": list(key), "commands": value} for key, value in bot.commands.items()]
        return _json(
            {
                "me": bot.me_json(),
                "privacy_mode": bot.privacy_mode,
                "commands": commands,
                "webhook": bot.webhook.info(bot.updates.pending_count, bot.updates.allowed),
                "descriptions": [
                    {"field": kind, "language_code": lang, "text": text}
                    for (kind, lang), text in bot.descriptions.items()
                ],
                "pending_updates": bot.updates.pending_count,
                "draft_lifetime": api.draft_lifetime,
            }
        )

    def _query_int(request: web.Request, key: str) -> int | None:
        value = request.query.get(key)
        try:
            return int(value) if value not in (None, "") else None
        except ValueError:
            raise ControlError(f"{key} must be an integer") from None

    async def transcript(request: web.Request) -> web.Response:
        chat_id = _query_int(request, "chat_id")
        if chat_id is None:
            return _json({"ok": False, "error": "chat_id is required"}, 400)
        chat = api.bot(request.query.get("token")).chats.get(chat_id)
        draft = chat.current_draft(api.draft_lifetime) if chat else None
        return _json(
            {
                "chat": chat.to_json() if chat else None,
                "action": chat.current_action() if chat else None,
                "draft": draft.to_json() if draft else None,
                "messages": [m.to_json() for m in api.transcript(chat_id, token=request.query.get("token"))],
            }
        )

    async def commands(request: web.Request) -> web.Response:
        found = api.commands_for(
            _query_int(request, "chat_id"),
            _query_int(request, "user_id"),
            request.query.get("language_code", ""),
            token=request.query.get("token"),
        )
        return _json({"commands": found})

    async def calls(request: web.Request) -> web.Response:
        return _json(
            {
                "counts": dict(api.calls),
                "faults": [f.to_json() for f in api.faults.faults],
                "rate_limits": api.rate_limits.to_json(),
            }
        )

    async def file(request: web.Request) -> web.StreamResponse:
        record = api.files.get(request.match_info["file_id"])
        if record is None or record.data is None:
            raise web.HTTPNotFound()
        return web.Response(body=record.data, content_type=record.mime_type or "application/octet-stream")

    async def events(request: web.Request) -> web.StreamResponse:
        chat_id = _query_int(request, "chat_id")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with api.events.subscribe() as queue, contextlib.suppress(ConnectionResetError):
            await response.write(b'data: {"type": "ready"}\n\n')
            while True:
                try:
                    async with asyncio.timeout(15.0):
                        event = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                if chat_id is None or event.get("chat_id") in (chat_id, None):
                    payload = json.dumps(event, ensure_ascii=False)
                    await response.write(f"data: {payload}\n\n".encode())
        return response

    app.router.add_post("/_control/{action}", action)
    app.router.add_get("/_control/bot", bot_info)
    app.router.add_get("/_control/transcript", transcript)
    app.router.add_get("/_control/commands", commands)
    app.router.add_get("/_control/calls", calls)
    app.router.add_get("/_control/files/{file_id}", file)
    app.router.add_get("/_control/events", events)


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value

"""Bot <-> worker wire protocol, version 1 (Redis). See docs/protocol.md.

Every Redis key name and every event shape lives here, so the bot, the worker, the benchmarks and the tests
cannot drift apart. This module imports neither torch nor redis: the bot imports it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

VERSION = 1

PREFIX = "omnifusion"
JOBS_STREAM = f"{PREFIX}:jobs"
DEAD_STREAM = f"{PREFIX}:jobs:dead"
GROUP = "workers"
HEARTBEAT_PATTERN = f"{PREFIX}:worker:*"

ROLES = ("system", "user", "assistant")
FINISH_REASONS = ("stop", "length", "cancelled")

# Machine codes of `error` events. The bot turns each into a human sentence.
ERROR_CODES = {
    "bad_json": "the job is not valid JSON",
    "bad_version": "the job speaks a protocol version this worker does not know",
    "bad_job": "the job is missing a required field or has one of the wrong type",
    "empty": "the job has no user message to answer",
    "image_missing": "an image the job refers to has expired or was never stored",
    "bad_image": "an image could not be decoded",
    "too_many_images": "the job has more images than the worker accepts",
    "too_long": "the current turn alone is longer than the model's context",
    "expired": "the job's deadline passed before it could be answered",
    "dead_letter": "the job failed on every delivery and was set aside",
    "internal": "the worker failed while answering",
}


def image_key(sha256_hex: str) -> str:
    return f"{PREFIX}:image:{sha256_hex}"


def image_key_for(data: bytes) -> str:
    return image_key(hashlib.sha256(data).hexdigest())


def reply_key(job_id: str) -> str:
    return f"{PREFIX}:reply:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}:cancel:{job_id}"


def heartbeat_key(worker_name: str) -> str:
    return f"{PREFIX}:worker:{worker_name}"


def lease_key(entry_id: str) -> str:
    """Who runs the job entry `entry_id` now: a worker's lease token, with a TTL (docs/protocol.md)."""
    return f"{PREFIX}:lease:{entry_id}"


LEASE_PREFIX = lease_key("")


class ProtocolError(Exception):
    """A job that cannot be served; `code` is one of ERROR_CODES and goes into the error event."""

    def __init__(self, code: str, message: str):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Job:
    id: str
    reply: str
    deadline: float | None
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def image_keys(self) -> list[str]:
        return [
            part["key"] for m in self.messages for part in m["content"] if part["type"] == "image"
        ]

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now or time.time()) > self.deadline

    def to_json(self) -> str:
        body = {"v": VERSION, "id": self.id, "reply": self.reply, "deadline": self.deadline,
                "messages": self.messages, "params": self.params}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def new_job(messages: list[dict[str, Any]], params: dict[str, Any] | None = None,
            timeout_s: float | None = 300.0, job_id: str | None = None) -> Job:
    job_id = job_id or uuid.uuid4().hex
    deadline = time.time() + timeout_s if timeout_s is not None else None
    return Job(id=job_id, reply=reply_key(job_id), deadline=deadline, messages=messages,
               params=dict(params or {}))


def _normalise_content(content: Any, where: str) -> list[dict[str, str]]:
    # A bare string is accepted as one text part: friendlier to hand-written clients, same meaning.
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ProtocolError("bad_job", f"{where}.content must be a list of parts")
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise ProtocolError("bad_job", f"{where}.content[{j}] must be an object")
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ProtocolError("bad_job", f"{where}.content[{j}].text must be a string")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image":
            key = part.get("key")
            if not isinstance(key, str) or not key.startswith(f"{PREFIX}:image:"):
                raise ProtocolError("bad_job", f"{where}.content[{j}].key must be an {PREFIX}:image:<sha256> key")
            parts.append({"type": "image", "key": key})
        else:
            raise ProtocolError("bad_job", f"{where}.content[{j}].type must be 'text' or 'image'")
    return parts


def parse_job(raw: bytes | str) -> Job:
    """Validate a job's JSON. Unknown fields are ignored, as the contract says."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"job is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "job must be a JSON object")
    if body.get("v") != VERSION:
        raise ProtocolError("bad_version", f"protocol version {body.get('v')!r} is not supported (want {VERSION})")
    job_id, reply = body.get("id"), body.get("reply")
    if not isinstance(job_id, str) or not job_id:
        raise ProtocolError("bad_job", "id must be a non-empty string")
    if not isinstance(reply, str) or not reply.startswith(f"{PREFIX}:reply:"):
        raise ProtocolError("bad_job", f"reply must be an {PREFIX}:reply:<id> stream name")
    deadline = body.get("deadline")
    # bool is an int to Python; NaN and Infinity are valid to its JSON parser: neither is a time
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int | float)
                                 or not math.isfinite(deadline)):
        raise ProtocolError("bad_job", "deadline must be a Unix time in seconds (a finite number) or null")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ProtocolError("bad_job", "params must be an object")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise ProtocolError("bad_job", "messages must be a list")
    messages = []
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ProtocolError("bad_job", f"messages[{i}].role must be one of {', '.join(ROLES)}")
        messages.append({"role": m["role"], "content": _normalise_content(m.get("content"), f"messages[{i}]")})
    if not any(m["role"] == "user" for m in messages):
        raise ProtocolError("empty", "the job has no user message")
    if messages[-1]["role"] != "user":
        raise ProtocolError("bad_job", "the last message must be the user's turn to answer")
    return Job(id=job_id, reply=reply, deadline=float(deadline) if deadline is not None else None,
               messages=messages, params=params)


def reply_of_raw(raw: bytes | str | None) -> str | None:
    """Best effort for a job that fails validation: where could its error go?"""
    try:
        reply = json.loads(raw).get("reply")
    except (TypeError, ValueError, AttributeError):
        return None
    return reply if isinstance(reply, str) and reply.startswith(f"{PREFIX}:reply:") else None


# --- reply events: flat string fields of one stream entry -------------------------------------------------

def delta_event(text: str) -> dict[str, str]:
    return {"event": "delta", "text": text}


def done_event(text: str, finish: str, tokens: int) -> dict[str, str]:
    assert finish in FINISH_REASONS, finish
    return {"event": "done", "text": text, "finish": finish, "tokens": str(tokens)}


def error_event(code: str, message: str) -> dict[str, str]:
    assert code in ERROR_CODES, code
    return {"event": "error", "code": code, "message": message}


def restart_event() -> dict[str, str]:
    return {"event": "restart"}


def decode_event(fields: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    """Stream entry (as redis-py returns it, bytes or str) -> dict with `tokens` as int."""
    out = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in fields.items()}
    if "tokens" in out:
        out["tokens"] = int(out["tokens"])
    return out

"""The worker's side of the Redis job stream: claim -> (run) -> write result -> ack.

Delivery is at-least-once. A job is acked only in the same MULTI/EXEC as its final reply event, so a crash
leaves it pending; a re-run first checks whether a final event already exists (then it only acks) and
otherwise writes `restart` before anything else, so a reader can drop what it had. See docs/protocol.md.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis

from model import protocol

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    entry_id: str  # stream entry id
    raw: bytes | None  # the job JSON (None if the entry has no `job` field)
    deliveries: int  # how many times the group has handed this entry out, this one included


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


class JobConsumer:
    def __init__(self, client: redis.Redis, consumer: str, reply_ttl_s: int, max_deliveries: int):
        self.r = client
        self.consumer = consumer
        self.reply_ttl_s = reply_ttl_s
        self.max_deliveries = max_deliveries
        self._autoclaim_cursor = "0-0"

    def ensure_group(self) -> None:
        try:  # from 0: jobs queued before any worker existed are served too
            self.r.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- taking jobs --------------------------------------------------------------------------------------

    def _deliveries(self, entries, count_of=None) -> list[Delivery]:
        out = []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing to run
                self.r.xack(protocol.JOBS_STREAM, protocol.GROUP, entry_id)
                continue
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get(b"job", fields.get("job"))
            out.append(Delivery(eid, raw, count_of(eid) if count_of else 1))
        return out

    def _counts(self, ids: list[str]) -> dict[str, int]:
        counts = {}
        for eid in ids:
            rows = self.r.xpending_range(protocol.JOBS_STREAM, protocol.GROUP, eid, eid, 1)
            counts[eid] = rows[0]["times_delivered"] if rows else 1
        return counts

    def read_own_pending(self, count: int) -> list[Delivery]:
        """Entries this consumer name took before a restart (same WORKER_NAME)."""
        resp = self.r.xreadgroup(protocol.GROUP, self.consumer, {protocol.JOBS_STREAM: "0"}, count=count)
        entries = resp[0][1] if resp else []
        counts = self._counts([(e.decode() if isinstance(e, bytes) else e) for e, f in entries if f])
        # re-reading our own pending list does not bump the counter: count this run as another delivery
        return self._deliveries(entries, lambda eid: counts.get(eid, 1) + 1)

    def read_new(self, count: int, block_ms: int | None) -> list[Delivery]:
        resp = self.r.xreadgroup(protocol.GROUP, self.consumer, {protocol.JOBS_STREAM: ">"}, count=count,
                                 block=block_ms)
        return self._deliveries(resp[0][1]) if resp else []

    def claim_orphans(self, count: int, min_idle_s: float) -> list[Delivery]:
        """Jobs idle longer than the visibility timeout on some (dead) worker become ours."""
        cursor, entries, _deleted = self.r.xautoclaim(protocol.JOBS_STREAM, protocol.GROUP, self.consumer,
                                                      int(min_idle_s * 1000), self._autoclaim_cursor, count=count)
        self._autoclaim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        counts = self._counts([(e.decode() if isinstance(e, bytes) else e) for e, f in entries if f])
        return self._deliveries(entries, lambda eid: counts.get(eid, 2))

    def keep_claimed(self, entry_ids: list[str]) -> None:
        """Reset the idle time of our live jobs so no one takes them over; JUSTID keeps delivery counts."""
        if entry_ids:
            self.r.xclaim(protocol.JOBS_STREAM, protocol.GROUP, self.consumer, 0, entry_ids, justid=True)

    def hand_back(self, entry_ids: list[str]) -> None:
        """Leave jobs pending but look long idle, so another worker's XAUTOCLAIM takes them at once."""
        if entry_ids:
            self.r.xclaim(protocol.JOBS_STREAM, protocol.GROUP, self.consumer, 0, entry_ids,
                          idle=10**9, justid=True)

    # --- replies ------------------------------------------------------------------------------------------

    def has_final(self, reply: str) -> bool:
        """Did an earlier delivery already finish this job? (crash between EXEC and the reader, or a race)"""
        for _, fields in self.r.xrevrange(reply, count=5):
            if protocol.decode_event(fields).get("event") in ("done", "error"):
                return True
        return False

    def emit(self, batch: list[tuple[str, list[dict[str, str]]]]) -> None:
        """Append events to several reply streams in one round trip: [(reply stream, events)]."""
        if not batch:
            return
        pipe = self.r.pipeline(transaction=False)
        for reply, events in batch:
            for event in events:
                pipe.xadd(reply, event)
            pipe.expire(reply, self.reply_ttl_s)
        pipe.execute()

    def finish(self, entry_id: str, reply: str | None, *events: dict[str, str]) -> None:
        """Final events and the ack, atomically: either both happened or neither."""
        pipe = self.r.pipeline(transaction=True)
        if reply:
            for event in events:
                pipe.xadd(reply, event)
            pipe.expire(reply, self.reply_ttl_s)
        self._ack(pipe, entry_id)
        pipe.execute()

    @staticmethod
    def _ack(pipe, entry_id: str) -> None:
        pipe.xack(protocol.JOBS_STREAM, protocol.GROUP, entry_id)

    def trim(self, keep_s: float) -> int:
        """Drop answered jobs older than `keep_s` so the stream does not grow forever. Never an entry that is
        pending on a worker or not yet delivered: the cut is below the oldest of those."""
        cut = int((time.time() - keep_s) * 1000)
        for group in self.r.xinfo_groups(protocol.JOBS_STREAM):
            if _text(group["name"]) == protocol.GROUP:
                cut = min(cut, _ms(_text(group["last-delivered-id"])) + 1)
        oldest = self.r.xpending(protocol.JOBS_STREAM, protocol.GROUP).get("min")
        if oldest:
            cut = min(cut, _ms(_text(oldest)))
        return self.r.xtrim(protocol.JOBS_STREAM, minid=f"{cut}-0", approximate=False)

    def dead_letter(self, delivery: Delivery, reply: str | None, reason: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(protocol.DEAD_STREAM, {"job": delivery.raw or b"", "entry": delivery.entry_id, "reason": reason,
                                         "deliveries": str(delivery.deliveries), "at": str(time.time())},
                  maxlen=10000)
        if reply:
            pipe.xadd(reply, protocol.error_event("dead_letter", reason))
            pipe.expire(reply, self.reply_ttl_s)
        self._ack(pipe, delivery.entry_id)
        pipe.execute()

    # --- side channels ------------------------------------------------------------------------------------

    def cancelled(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        flags = self.r.mget([protocol.cancel_key(j) for j in job_ids])
        return {j for j, f in zip(job_ids, flags, strict=True) if f is not None}

    def heartbeat(self, ttl_s: int, info: dict) -> None:
        self.r.set(protocol.heartbeat_key(self.consumer), json.dumps(info), ex=ttl_s)

    def clear_heartbeat(self) -> None:
        self.r.delete(protocol.heartbeat_key(self.consumer))

    def queue_depth(self) -> int:
        """Jobs not yet handed to any worker (the group's lag) plus jobs pending on workers."""
        for group in self.r.xinfo_groups(protocol.JOBS_STREAM):
            if _text(group["name"]) == protocol.GROUP:
                return int(group.get("lag") or 0) + int(group.get("pending") or 0)
        return 0

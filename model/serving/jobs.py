"""The worker's side of the Redis job stream: claim (with a lease) -> run -> write result -> ack.

Delivery is at-least-once, execution is leased. A worker runs a job only while it holds the job's lease; the
lease is taken with the claim, renewed only by its holder, and checked by every write for the job, so a
worker that stalled past its lease writes nothing more (not even a delta) once another took over. The final
event and the ack go together (all or nothing), and never after a final event that is already there. A
re-run writes `restart` before anything else, so a reader can drop what it had. See docs/protocol.md.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

import redis

from model import protocol
from model.serving import lease_scripts

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


def _events_args(events) -> list:
    """Events as the scripts read them (lease_scripts._EVENTS)."""
    out: list = [len(events)]
    for event in events:
        out.append(len(event))
        for name, value in event.items():
            out += [name, value]
    return out


class JobConsumer:
    """One worker's access to the job stream. Every job it runs is under a lease only it can renew, and every
    write for a job checks that lease in the same atomic script (model/serving/lease_scripts.py)."""

    def __init__(self, client: redis.Redis, consumer: str, reply_ttl_s: int, max_deliveries: int,
                 lease_s: float = 60.0):
        self.r = client
        self.consumer = consumer
        self.reply_ttl_s = reply_ttl_s
        self.max_deliveries = max_deliveries
        self.lease_ms = max(1, int(lease_s * 1000))
        # Unique per process, so a restarted worker under the same name is a different holder; it may still
        # take over the leases of its predecessors (the prefix), which is what a restart is for.
        self.token = f"{consumer}:{uuid.uuid4().hex[:12]}"
        self._acquire = client.register_script(lease_scripts.ACQUIRE)
        self._take_over = client.register_script(lease_scripts.TAKE_OVER)
        self._renew = client.register_script(lease_scripts.RENEW)
        self._hand_back = client.register_script(lease_scripts.HAND_BACK)
        self._emit = client.register_script(lease_scripts.EMIT)
        self._finish = client.register_script(lease_scripts.FINISH)

    def ensure_group(self) -> None:
        try:  # from 0: jobs queued before any worker existed are served too
            self.r.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- taking jobs: each comes with its lease, or not at all ---------------------------------------------

    def _leased(self, entries, deliveries, reclaim: str = "") -> list[Delivery]:
        """Entries as read by XREADGROUP -> the deliveries whose lease we got."""
        out = []
        for entry_id, fields in entries:
            eid = _text(entry_id)
            if not fields:  # deleted from the stream while pending: nothing to run
                self.r.xack(protocol.JOBS_STREAM, protocol.GROUP, eid)
                continue
            out.append(Delivery(eid, fields.get(b"job", fields.get("job")), deliveries(eid)))
        if not out:
            return []
        taken = self._acquire(keys=[protocol.lease_key(d.entry_id) for d in out],
                              args=[self.token, self.lease_ms, reclaim])
        if len(taken) < len(out):  # someone else holds these: leave them to the holder
            log.warning("%d entries read but leased by another worker", len(out) - len(taken))
        return [out[i - 1] for i in taken]

    def read_own_pending(self, count: int) -> list[Delivery]:
        """Entries this consumer name took before a restart (same WORKER_NAME) or before Redis went away."""
        # Counted before the read: whether re-reading one's own pending list bumps the counter has varied.
        before = {_text(row["message_id"]): row["times_delivered"] for row in self.r.xpending_range(
            protocol.JOBS_STREAM, protocol.GROUP, "-", "+", count, consumername=self.consumer)}
        resp = self.r.xreadgroup(protocol.GROUP, self.consumer, {protocol.JOBS_STREAM: "0"}, count=count)
        entries = resp[0][1] if resp else []
        return self._leased(entries, lambda eid: before.get(eid, 0) + 1, reclaim=f"{self.consumer}:")

    def read_new(self, count: int, block_ms: int | None) -> list[Delivery]:
        resp = self.r.xreadgroup(protocol.GROUP, self.consumer, {protocol.JOBS_STREAM: ">"}, count=count,
                                 block=block_ms)
        return self._leased(resp[0][1], lambda _: 1) if resp else []

    def claim_orphans(self, count: int, min_idle_s: float) -> list[Delivery]:
        """Jobs idle at least `min_idle_s` whose lease has expired (their worker died or stalled) become ours."""
        rows = self._take_over(keys=[protocol.JOBS_STREAM], args=[
            protocol.GROUP, self.consumer, int(min_idle_s * 1000), count, self.token, self.lease_ms,
            protocol.LEASE_PREFIX, max(4 * count, 16)])
        out = []
        for entry_id, flat, deliveries in rows:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            out.append(Delivery(_text(entry_id), fields.get(b"job", fields.get("job")), int(deliveries)))
        return out

    def keep_claimed(self, entry_ids: list[str]) -> set[str]:
        """Renew our leases (and reset the entries' idle time); -> the entry ids whose lease was lost."""
        if not entry_ids:
            return set()
        lost = self._renew(keys=[protocol.JOBS_STREAM, *map(protocol.lease_key, entry_ids)],
                           args=[self.token, self.lease_ms, protocol.GROUP, self.consumer, *entry_ids])
        return {_text(e) for e in lost}

    def hand_back(self, entry_ids: list[str]) -> None:
        """Give up the leases and leave the jobs pending but long idle, so another worker takes them at once."""
        if entry_ids:
            self._hand_back(keys=[protocol.JOBS_STREAM, *map(protocol.lease_key, entry_ids)],
                            args=[self.token, protocol.GROUP, self.consumer, *entry_ids])

    # --- replies: written only while the lease is ours -------------------------------------------------------

    def has_final(self, reply: str) -> bool:
        """Did an earlier delivery already finish this job? (e.g. a duplicate entry of the same job)"""
        for _, fields in self.r.xrevrange(reply, count=5):
            if protocol.decode_event(fields).get("event") in ("done", "error"):
                return True
        return False

    def emit(self, batch: list[tuple[str, str, list[dict[str, str]]]]) -> set[str]:
        """Append events to several reply streams in one round trip: [(entry id, reply stream, events)].
        -> entry ids whose lease was lost: nothing was written for those."""
        if not batch:
            return set()
        keys, args = [], [self.token, self.reply_ttl_s]
        for entry_id, reply, events in batch:
            keys += [protocol.lease_key(entry_id), reply]
            args += _events_args(events)
        lost = self._emit(keys=keys, args=args)
        return {batch[i - 1][0] for i in lost}

    def finish(self, entry_id: str, reply: str | None, *events: dict[str, str],
               dead_letter: dict[str, str] | None = None) -> bool:
        """Final events (and a dead letter), the ack and the end of our lease, atomically: all or nothing.
        False: the lease was lost (another worker runs the job now), so nothing was written."""
        keys = [protocol.lease_key(entry_id), protocol.JOBS_STREAM, reply or protocol.DEAD_STREAM,
                protocol.DEAD_STREAM]
        args = [self.token, protocol.GROUP, entry_id, self.reply_ttl_s, 1 if reply else 0,
                *_events_args(events if reply else ()), *_events_args([dead_letter] if dead_letter else [])]
        return self._finish(keys=keys, args=args) != 0

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

    def dead_letter(self, delivery: Delivery, reply: str | None, reason: str) -> bool:
        return self.finish(delivery.entry_id, reply, *([protocol.error_event("dead_letter", reason)] if reply else []),
                           dead_letter={"job": delivery.raw or b"", "entry": delivery.entry_id, "reason": reason,
                                        "deliveries": str(delivery.deliveries), "at": str(time.time())})

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

"""The inference worker: `python -m model.worker`. See docs/protocol.md and docs/worker.md.

One thread, one loop: take jobs while the batch has room, prefill them into the running batch, decode one
token for every request, stream coalesced deltas, finish (final event + ack atomically), repeat. Between steps:
cancellations, claim refresh, orphan takeover, heartbeat, metrics. SIGTERM stops taking jobs, drains the batch
for a bounded time and hands back what is left.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import redis

from model import protocol
from model.serving.engine import BatchGenerator, Event, Request
from model.serving.jobs import Delivery, JobConsumer
from model.serving.kvcache import admissible, peak_slots
from model.serving.prepare import Preparer
from model.serving.settings import WorkerSettings
from model.serving.worker_metrics import WorkerMetrics

log = logging.getLogger("omnifusion.worker")

IDLE_BLOCK_MS = 500
BUSY_POLL_S = 0.01  # while decoding, look for new jobs at most this often (a poll is a Redis round trip)
HOUSEKEEPING_S = 0.25
ORPHAN_SCAN_S = 2.0
TRIM_S = 30.0


@dataclass
class Active:
    delivery: Delivery
    job: protocol.Job
    request: Request  # its id is the stream entry id: unique, where a client's job id need not be
    prompt_tokens: int
    taken_at: float = field(default_factory=time.monotonic)
    text: str = ""
    unsent: str = ""
    last_flush: float = 0.0  # the first text goes out at once: time to first token is what users feel
    first_token_at: float | None = None


class Worker:
    def __init__(self, settings: WorkerSettings, model=None, client: redis.Redis | None = None):
        self.settings = settings
        if model is None:
            from model.checkpoint import load_model

            model = load_model(settings.model_preset, settings.model_path, settings.load_in_8bit, settings.device)
        self.model = model
        self.client = client or redis.Redis.from_url(settings.redis_url)
        self.queue = JobConsumer(self.client, settings.worker_name, settings.worker_reply_ttl_s,
                                 settings.worker_max_deliveries, lease_s=settings.worker_visibility_timeout_s)
        self.engine = BatchGenerator(model)
        self.prepare = Preparer(model, self.client, settings)
        self.cache = self.prepare.cache
        self.metrics = WorkerMetrics()
        self.active: dict[str, Active] = {}  # by stream entry id
        self.waiting: deque[Active] = deque()  # taken, waiting for room in the KV budget
        self.stopping = False
        self.drain_deadline = float("inf")
        self.started = time.time()
        self._next_housekeeping = self._next_orphan_scan = self._next_claim = self._next_trim = 0.0
        self._next_poll = 0.0

    # --- lifecycle ----------------------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        if not self.stopping:
            log.info("stop requested: taking no new jobs, draining %d", len(self.active) + len(self.waiting))
            self.stopping = True
            self.drain_deadline = time.monotonic() + self.settings.worker_drain_timeout_s

    def run(self, install_signals: bool = True) -> int:
        if install_signals:  # only possible in the main thread; tests run workers in threads
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        s = self.settings
        server = self.metrics.serve(s.worker_metrics_port, s.worker_metrics_host) if s.worker_metrics_port else None
        log.info("worker %s ready (preset %s, device %s)", self.settings.worker_name, self.model.config.preset,
                 self.model.device)
        try:
            self._connect()
            while not (self.stopping and (not self.active and not self.waiting
                                          or time.monotonic() > self.drain_deadline)):
                try:
                    self.loop_once()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self._reconnect(exc)
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc) and "no such key" not in str(exc):
                        raise
                    self._reconnect(exc)  # Redis came back without its data: the group must be made again
        finally:
            self._leave()
            if server:
                server[0].shutdown()
        return 0

    def _connect(self) -> None:
        self.queue.ensure_group()
        self._housekeeping()  # heartbeat at once: the bot tells users whether a model is online
        self._take(self.queue.read_own_pending(self.settings.worker_max_batch))

    def _reconnect(self, exc: Exception) -> None:
        """Redis went away. Jobs in flight stay in our pending list (if Redis kept its data) and are re-run,
        with a `restart` event, once we are back: drop their state here rather than guess what was written."""
        log.warning("lost Redis (%s): dropping %d jobs in flight, reconnecting", exc,
                    len(self.active) + len(self.waiting))
        self.active.clear()
        self.waiting.clear()
        self.engine = BatchGenerator(self.model)
        delay = 0.2
        while not self.stopping:
            time.sleep(delay)
            try:
                self._connect()
                log.info("Redis is back")
                return
            except (redis.ConnectionError, redis.TimeoutError):
                delay = min(delay * 2, 5.0)

    def _leave(self) -> None:
        left = [a.delivery.entry_id for a in [*self.active.values(), *self.waiting]]
        try:
            if left:
                log.info("handing back %d unfinished jobs", len(left))
                self.queue.hand_back(left)
            self.queue.clear_heartbeat()
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("Redis unreachable while stopping: %d jobs stay pending until the visibility timeout",
                        len(left))

    def loop_once(self) -> None:
        free = self.settings.worker_max_batch - len(self.active) - len(self.waiting)
        busy = bool(self.active or self.waiting)
        if not self.stopping and free > 0 and (not busy or time.monotonic() >= self._next_poll):
            self._next_poll = time.monotonic() + BUSY_POLL_S
            found = self.queue.read_new(free, None if busy else IDLE_BLOCK_MS)
            now = time.monotonic()
            if len(found) < free and now >= self._next_orphan_scan:
                self._next_orphan_scan = now + ORPHAN_SCAN_S
                found += self.queue.claim_orphans(free - len(found), self.settings.worker_visibility_timeout_s)
            self._take(found)
        self._admit()
        if len(self.engine):
            try:
                events = self.engine.step()  # a request that fails alone comes back as an `error` event
            except Exception:  # the engine itself broke (a bug): its state is unknown
                log.exception("decode step failed with %d jobs in the batch", len(self.engine))
                return self._reset_engine()
            self._handle(events)
        if time.monotonic() >= self._next_housekeeping:
            self._housekeeping()

    # --- taking and admitting jobs ------------------------------------------------------------------------

    def _take(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            taken_at = time.monotonic()
            if d.deliveries > self.settings.worker_max_deliveries:
                reason = f"delivered {d.deliveries} times without finishing"
                log.warning("job entry %s dead-lettered: %s", d.entry_id, reason)
                self.queue.dead_letter(d, protocol.reply_of_raw(d.raw), reason)
                self.metrics.errors.labels("dead_letter").inc()
                continue
            try:
                job = protocol.parse_job(d.raw or b"")
            except protocol.ProtocolError as exc:
                self._fail(d, protocol.reply_of_raw(d.raw), exc.code, exc.message)
                continue
            if d.deliveries > 1:
                if self.queue.has_final(job.reply):  # answered by an earlier delivery: only the ack is left
                    self.queue.finish(d.entry_id, None)
                    continue
                if self.queue.emit([(d.entry_id, job.reply, [protocol.restart_event()])]):
                    self._lost([d.entry_id])
                    continue
            self.metrics.queue_wait.observe(max(0.0, time.time() - int(d.entry_id.split("-")[0]) / 1000))
            if job.expired():
                self._fail(d, job.reply, "expired", "the deadline passed before the job was taken")
            elif self.queue.cancelled([job.id]):
                self.queue.finish(d.entry_id, job.reply, protocol.done_event("", "cancelled", 0))
            else:
                self._prepare(d, job, taken_at)

    def _prepare(self, d: Delivery, job: protocol.Job, taken_at: float) -> None:
        try:
            prepared = self.prepare(d.entry_id, job)
        except protocol.ProtocolError as exc:
            return self._fail(d, job.reply, exc.code, exc.message)
        except Exception:  # a bug or an out-of-memory: retry elsewhere, dead-letter after N deliveries
            log.exception("job %s failed while preparing", job.id)
            return self._retry_later([d])
        dialog = prepared.dialog
        log.info("job %s taken: delivery %d, %d tokens, %d images, %d turns dropped", job.id, d.deliveries,
                 len(dialog), len(dialog.image_keys), dialog.dropped_turns)
        self.waiting.append(Active(d, job, prepared.request, len(dialog), taken_at=taken_at))

    @staticmethod
    def _budget(a: Active) -> tuple[int, int]:
        return a.prompt_tokens, a.request.params.max_new_tokens

    def _admit(self) -> None:
        """Admit waiting jobs while the batch's worst-case padded size stays within the budget
        (model/serving/kvcache.py: rows are padded to the longest, and every row may still grow)."""
        n = admissible(self.engine.budgets(), [self._budget(a) for a in self.waiting],
                       self.settings.worker_max_tokens_in_flight)
        batch = [self.waiting.popleft() for _ in range(n)]
        if not batch:
            return
        self.active.update({a.delivery.entry_id: a for a in batch})
        try:
            self._handle(self.engine.add([a.request for a in batch]))  # one that fails alone: `error` event
        except Exception:  # the engine itself broke (a bug): its state is unknown
            log.exception("prefill failed for %d jobs", len(batch))
            self._reset_engine()
        self.metrics.kv_slots_peak.set(peak_slots(self.engine.budgets()))

    # --- events -------------------------------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        now = time.monotonic()
        flush = []
        for e in events:
            a = self.active.get(e.id)
            if a is None:
                continue
            if e.error is not None:
                self._failed_in_model(a, e.error)
                continue
            if a.first_token_at is None:
                a.first_token_at = now
                self.metrics.ttft.observe(now - a.taken_at)
            self.metrics.tokens.inc()
            a.text += e.text
            a.unsent += e.text
            if e.finish:
                self._complete(a, e)
            elif a.unsent and now - a.last_flush >= self.settings.worker_delta_interval_s:
                flush.append((e.id, a.job.reply, [protocol.delta_event(a.unsent)]))
                a.unsent, a.last_flush = "", now
        self._lost(self.queue.emit(flush))
        self.metrics.batch_size.set(len(self.engine))

    def _complete(self, a: Active, e: Event) -> None:
        events = [protocol.delta_event(a.unsent)] if a.unsent else []
        events.append(protocol.done_event(a.text, e.finish, e.tokens))
        self.active.pop(a.delivery.entry_id, None)
        if not self.queue.finish(a.delivery.entry_id, a.job.reply, *events):
            return self._lost([a.delivery.entry_id])
        elapsed = time.monotonic() - a.taken_at
        self.metrics.jobs.labels(e.finish).inc()
        self.metrics.latency.observe(elapsed)
        log.info("job %s done: finish=%s tokens=%d ttft=%.3fs total=%.3fs", a.job.id, e.finish, e.tokens,
                 (a.first_token_at or time.monotonic()) - a.taken_at, elapsed)

    def _failed_in_model(self, a: Active, error: Exception) -> None:
        """The model failed on this job even alone (the others in its batch went on): answer it, not them."""
        log.error("job %s failed in the model: %r", a.job.id, error, exc_info=error)
        self.active.pop(a.delivery.entry_id, None)
        self._fail(a.delivery, a.job.reply, "internal", "the model failed on this request")

    def _lost(self, entry_ids) -> None:
        """Our lease on these ran out and another worker took them over: drop them, write nothing."""
        for entry_id in entry_ids:
            self.metrics.leases_lost.inc()
            if self.active.pop(entry_id, None):
                self.engine.cancel(entry_id)
            self.waiting = deque(w for w in self.waiting if w.delivery.entry_id != entry_id)
            log.warning("job entry %s dropped: its lease ran out and another worker took it over", entry_id)

    def _fail(self, d: Delivery, reply: str | None, code: str, message: str) -> None:
        log.info("job entry %s error: %s (%s)", d.entry_id, code, message)
        self.metrics.errors.labels(code).inc()
        if reply is None:  # nowhere to answer: keep it for a human in the dead-letter stream
            done = self.queue.dead_letter(d, None, f"{code}: {message}")
        else:
            done = self.queue.finish(d.entry_id, reply, protocol.error_event(code, message))
        if not done:
            self._lost([d.entry_id])

    def _retry_later(self, deliveries: list[Delivery]) -> None:
        self.metrics.errors.labels("internal").inc()
        self.queue.hand_back([d.entry_id for d in deliveries])

    def _reset_engine(self) -> None:
        """A step failed: the batch's state is unknown. Hand its jobs back and start clean."""
        self._retry_later([a.delivery for a in self.active.values()])
        self.active.clear()
        self.engine = BatchGenerator(self.model)

    # --- between steps ------------------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self._next_housekeeping = now + HOUSEKEEPING_S
        if now >= self._next_claim:  # first: a job whose lease is gone must not be touched below
            self._next_claim = now + self.settings.worker_claim_refresh_s
            self._lost(self.queue.keep_claimed([*self.active, *(w.delivery.entry_id for w in self.waiting)]))
        by_job = {a.job.id: entry_id for entry_id, a in self.active.items()}
        for job_id in self.queue.cancelled(list(by_job)):
            event = self.engine.cancel(by_job[job_id])
            if event:
                self._handle([event])
        gone = self.queue.cancelled([w.job.id for w in self.waiting])
        for a in [w for w in self.waiting if w.job.id in gone]:
            self.waiting.remove(a)
            self.queue.finish(a.delivery.entry_id, a.job.reply, protocol.done_event("", "cancelled", 0))
        if now >= self._next_trim:
            self._next_trim = now + TRIM_S
            self.queue.trim(self.settings.worker_job_retention_s)
        self.queue.heartbeat(self.settings.worker_heartbeat_ttl_s, {
            "name": self.settings.worker_name, "preset": self.model.config.preset, "batch": len(self.engine),
            "waiting": len(self.waiting), "started": self.started, "stopping": self.stopping})
        self.metrics.queue_depth.set(self.queue.queue_depth())
        self.metrics.sample(self.engine, self.cache)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = WorkerSettings()
    return Worker(settings).run()


if __name__ == "__main__":
    sys.exit(main())

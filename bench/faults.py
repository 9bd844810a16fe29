"""Fault runs: people keep chatting (photo + question, then follow-ups) while something breaks, and every turn
is judged from what its person saw. One stack (local Bot API server, `python -m bot`, one tiny worker) on a
private redis-server (AOF, fsync every second) of its own, so restarting Redis touches nothing else.

Scenarios, one after the other, each with fresh users:
  worker-kill      the worker is SIGKILLed with jobs in flight, then restarted (same name: it re-runs its
                   own pending jobs at once, each starting with a `restart` event)
  bot-api-faults   the Bot API answers 429 (retry_after) to everything for a while, then 502
  redis-restart    Redis stopped (SIGTERM: AOF flushed) for a few seconds and started again with its data
  redis-wiped      Redis killed and started empty: queued jobs, answers in flight, dialogs are gone
  flood            Telegram's flood limits on; people chat quietly, then again while one rate-limited user
                   sends 200 messages. Goal: the others' median latency within 1.5x the quiet run, at most
                   20 answers of 429 caused by the bot (bench/faults.py prints both)

For each fault: answers delivered / turns sent, duplicates, users told clearly, lost turns, jobs hit by the
fault, and recovery time (from the end of the fault until every turn it touched was settled). Every turn must
be answered exactly once or its user told; nothing may crash.

    python bench/faults.py [--users 20] [--only worker-kill --only flood ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import RedisServer, Stack, wait_until  # noqa: E402
from bench.users import Crowd, Figures  # noqa: E402
from bot import keys  # noqa: E402
from model import protocol  # noqa: E402

Fault = Callable[["FaultContext"], Awaitable[None]]


@dataclass
class FaultContext:
    stack: Stack
    redis_server: RedisServer
    started: float = 0.0  # time.monotonic() when the fault began / ended
    ended: float = 0.0
    hit: int = 0  # jobs queued or running (or, for Bot API faults, answers being delivered) at the fault


@dataclass
class FaultResult:
    name: str
    figures: Figures
    context: FaultContext
    recovery_s: float | None  # None: some turn touched by the fault never settled
    told_users: int
    crashed: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(_broken(self.figures) or self.crashed)

    def lines(self) -> list[str]:
        f = self.figures
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return [
            f"{self.name}: answers delivered {f.answered}/{f.turns} turns, duplicates {f.duplicates}, "
            f"told clearly {f.told} turns ({self.told_users} users), lost {f.lost}, users left 'busy' {f.stuck}",
            f"    fault lasted {self.context.ended - self.context.started:.1f} s, hit {self.context.hit} jobs "
            f"in flight; recovered {recovery} after it ended; crashed: {', '.join(self.crashed) or 'nothing'}",
        ]


def _broken(figures: Figures) -> int:
    """Turns lost or answered twice, and users left 'busy': none of them may happen."""
    return figures.lost + figures.duplicates + figures.stuck


# --- the faults ---------------------------------------------------------------------------------------------

async def _jobs_in_flight(stack: Stack) -> int:
    """Jobs queued or being answered (pending in the consumer group)."""
    try:
        groups = await stack.redis.xinfo_groups(protocol.JOBS_STREAM)
    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):  # no stream yet / restarting
        return 0
    return sum(int(g.get("pending", 0)) + int(g.get("lag") or 0) for g in groups)


async def kill_worker(ctx: FaultContext, down_s: float = 1.0, at_least: int = 3) -> None:
    await wait_until(lambda: _pending_on(ctx.stack, "w0", at_least), 30, "jobs in flight on the worker")
    ctx.hit = await _jobs_in_flight(ctx.stack)
    ctx.started = time.monotonic()
    ctx.stack.kill_worker("w0")
    await asyncio.sleep(down_s)  # the worker stays dead for a while, as under a supervisor's backoff
    await ctx.stack.start_worker("w0")
    ctx.ended = time.monotonic()


async def _pending_on(stack: Stack, worker: str, at_least: int) -> bool:
    consumers = await stack.redis.xinfo_consumers(protocol.JOBS_STREAM, protocol.GROUP)
    return any(c["name"].decode() == worker and c["pending"] >= at_least for c in consumers)


def restart_redis(keep_data: bool, down_s: float = 3.0, at_least: int = 3) -> Fault:
    async def fault(ctx: FaultContext) -> None:
        async def enough() -> bool:
            return await _jobs_in_flight(ctx.stack) >= at_least

        await wait_until(enough, 30, "jobs in the queue", every_s=0.02)
        ctx.hit = await _jobs_in_flight(ctx.stack)
        ctx.started = time.monotonic()
        ctx.redis_server.stop(graceful=keep_data)
        if not keep_data:  # a new, empty machine: the AOF is gone with the old one
            shutil.rmtree(ctx.redis_server.data_dir)
        await asyncio.sleep(down_s)
        await ctx.redis_server.start()
        ctx.ended = time.monotonic()

    return fault


async def bot_api_faults(ctx: FaultContext, each_s: float = 6.0) -> None:
    server = ctx.stack.server

    async def answers_in_flight() -> int:
        return len([k async for k in ctx.stack.redis.scan_iter(match=keys.INFLIGHT_PATTERN)])

    ctx.hit = await wait_until(answers_in_flight, 30, "answers being delivered", every_s=0.02)
    ctx.started = time.monotonic()
    server.inject_retry_after(retry_after=2, seconds=each_s)
    await asyncio.sleep(each_s)
    server.inject_server_error(status=502, seconds=each_s)
    await asyncio.sleep(each_s)
    ctx.ended = time.monotonic()


# Bot API faults and the flood before the Redis faults: Redis restarts have after-effects that would blur them.
SCENARIOS: dict[str, Fault] = {
    "worker-kill": kill_worker,
    "bot-api-faults": bot_api_faults,
    "redis-restart": restart_redis(keep_data=True),
    "redis-wiped": restart_redis(keep_data=False),
}
FLOOD = "flood"
ORDER = ["worker-kill", "bot-api-faults", FLOOD, "redis-restart", "redis-wiped"]


# --- the flood ----------------------------------------------------------------------------------------------

FLOOD_LATENCY_GOAL = 1.5  # the others' median latency during the flood, as a multiple of the quiet run's
FLOOD_429_GOAL = 20


@dataclass
class FloodResult:
    quiet: Figures
    figures: Figures  # the other users' turns during the flood
    sent: int  # messages the flooder sent
    told: int  # bot messages the flooder got (the answer to its one allowed turn, then notices)
    refused_429: int  # answers of 429 to the bot's calls during the flooded run
    refused_429_flooder: int  # of which in the flooder's chat
    refused_429_quiet: int  # the same during the quiet run, for comparison
    crashed: list[str] = field(default_factory=list)
    name: str = "flood"

    @property
    def ratio(self) -> float:
        return self.figures.percentile(0.5) / self.quiet.percentile(0.5)

    @property
    def goal_met(self) -> bool:
        return self.ratio <= FLOOD_LATENCY_GOAL and self.refused_429 <= FLOOD_429_GOAL

    @property
    def failed(self) -> bool:
        return bool(_broken(self.figures) or self.crashed or not self.goal_met)

    def lines(self) -> list[str]:
        f = self.figures
        return [
            f"flood: others' median latency {self.quiet.percentile(0.5):.2f} s quiet, {f.percentile(0.5):.2f} s "
            f"while one user sent {self.sent} messages (x{self.ratio:.2f}, goal <= {FLOOD_LATENCY_GOAL}); "
            f"answers of 429: {self.refused_429} (goal <= {FLOOD_429_GOAL}; {self.refused_429_flooder} of them in "
            f"the flooder's chat; {self.refused_429_quiet} in the quiet run)",
            f"    the flooder got {self.told} messages; others: answered {f.answered}/{f.turns} turns, "
            f"told {f.told}, lost {f.lost}, duplicates {f.duplicates}; crashed: {', '.join(self.crashed) or 'nothing'}",
        ]


def _refused(server, mark: int) -> list:
    """The calls answered 429 since call number `mark`."""
    return [r for r in itertools.islice(server.call_log, mark, None) if r.status == 429]


async def flood(stack: Stack, user_id: int, messages: int, spread_s: float) -> None:
    """One user sends `messages` texts over `spread_s`: the first is admitted, the rest are refused (busy while
    it is answered, then limited: the user's limit is one turn an hour)."""
    await stack.server.create_user(user_id=user_id, first_name="Flooder", language_code="en")
    await stack.redis.set(keys.limit(user_id), "1/3600")
    for i in range(messages):
        await stack.server.send_text(user_id, f"spam {i}")
        await asyncio.sleep(spread_s / messages)


async def run_flood(stack: Stack, users: int, first_user_id: int, chat_s: float, turn_timeout_s: float,
                    messages: int = 200, spread_s: float = 10.0) -> FloodResult:
    server = stack.server
    server.set_rate_limits(enabled=True)
    try:
        quiet_mark = len(server.call_log)
        quiet = Crowd(stack, turn_timeout_s=turn_timeout_s, first_user_id=first_user_id)
        await quiet.run(users, ramp_s=2.0, stop_at=time.monotonic() + chat_s)
        await quiet.settle(within_s=turn_timeout_s)
        quiet.judge()
        refused_quiet = _refused(server, quiet_mark)
        mark = len(server.call_log)
        loud = Crowd(stack, turn_timeout_s=turn_timeout_s, first_user_id=first_user_id + users)
        flooder = first_user_id + 2 * users
        chatting = asyncio.create_task(loud.run(users, ramp_s=2.0, stop_at=time.monotonic() + chat_s))
        await asyncio.sleep(min(3.0, chat_s / 4))  # everyone is mid-conversation when it starts
        await flood(stack, flooder, messages, spread_s)
        await chatting
        held = await loud.settle(within_s=turn_timeout_s)
        await asyncio.sleep(1.0)
        loud.judge()
        refused = _refused(server, mark)
    finally:
        server.set_rate_limits(enabled=False)
    return FloodResult(
        Figures.of(quiet.turns, chat_s),
        Figures.of(loud.turns, chat_s, stuck_users=len(held)),
        sent=messages,
        told=len(server.bot_messages(flooder)),
        refused_429=len(refused),
        refused_429_flooder=sum(1 for r in refused if r.chat_id == flooder),
        refused_429_quiet=len(refused_quiet),
        crashed=stack.crashed(),
    )


# --- running one --------------------------------------------------------------------------------------------

async def run_scenario(ctx: FaultContext, name: str, fault: Fault, users: int, first_user_id: int,
                       chat_s: float, turn_timeout_s: float) -> FaultResult:
    crowd = Crowd(ctx.stack, turn_timeout_s=turn_timeout_s, first_user_id=first_user_id)
    started = time.monotonic()
    chatting = asyncio.create_task(crowd.run(users, ramp_s=2.0, stop_at=started + chat_s))
    try:
        await fault(ctx)
    finally:
        ctx.stack.server.clear_faults()
        await chatting
    held = await crowd.settle(within_s=turn_timeout_s)
    await asyncio.sleep(1.0)  # a late duplicate must be seen by the judge
    crowd.judge()
    touched = [t for t in crowd.turns
               if t.sent_at < ctx.ended and (t.settled_at is None or t.settled_at > ctx.started)]
    if any(t.done_at is None for t in touched):
        recovery = None
    else:
        recovery = max((t.done_at - ctx.ended for t in touched), default=0.0)
    return FaultResult(
        name,
        Figures.of(crowd.turns, time.monotonic() - started, stuck_users=len(held)),
        ctx,
        max(recovery, 0.0) if recovery is not None else None,
        told_users=len({t.user_id for t in crowd.turns if t.outcome == "told"}),
        crashed=ctx.stack.crashed(),
    )


async def run_all(names: list[str], users: int, scratch: Path, chat_s: float, job_timeout_s: float,
                  max_new_tokens: int, logs: Path | None = None, flood_users: int = 5
                  ) -> list[FaultResult | FloodResult]:
    logs = logs or scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(scratch / "redis", persistent=True, log_path=logs / "redis.log")
    await redis_server.start()
    try:
        stack = Stack(redis_server.url, logs, worker_env={"OMP_NUM_THREADS": "1"},
                      bot_env={"MAX_NEW_TOKENS": str(max_new_tokens), "JOB_TIMEOUT_S": str(job_timeout_s)})
        results = []
        async with stack:
            for index, name in enumerate(names):
                ctx = FaultContext(stack, redis_server)
                # a lost job is only given up after its deadline (+ the bot's grace): wait that long
                timeout = job_timeout_s + 180
                first_user_id = 710_000_001 + 1000 * index
                if name == FLOOD:
                    result = await run_flood(stack, flood_users, first_user_id, chat_s, timeout)
                else:
                    result = await run_scenario(ctx, name, SCENARIOS[name], users, first_user_id, chat_s,
                                                timeout)
                results.append(result)
                print("\n".join(result.lines()), flush=True)
        return results
    finally:
        redis_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--flood-users", type=int, default=5,
                        help="people chatting beside the flooder: few enough that the one worker keeps up, so the "
                             "latency measures the bot and not the queue")
    parser.add_argument("--only", action="append", choices=ORDER, help="run only these (repeatable)")
    parser.add_argument("--chat", type=float, default=25.0, help="seconds people keep chatting per scenario")
    parser.add_argument("--job-timeout", type=float, default=60.0,
                        help="the bot's JOB_TIMEOUT_S (600 in production): how long a lost job can keep its "
                             "user waiting")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--logs", type=Path, help="folder for the processes' logs (default: a temporary one)")
    args = parser.parse_args()
    names = [name for name in ORDER if name in args.only] if args.only else ORDER
    with tempfile.TemporaryDirectory(prefix="omnifusion-faults-") as scratch:
        results = asyncio.run(run_all(names, args.users, Path(scratch), args.chat, args.job_timeout,
                                      args.max_new_tokens, args.logs, args.flood_users))
    print()
    for result in results:
        print("\n".join(result.lines()))
    bad = [r.name for r in results if r.failed]
    delivered = sum(r.figures.answered + r.figures.told for r in results)
    print(f"turns answered or told: {delivered}/{sum(r.figures.turns for r in results)}"
          f"{'  FAILED: ' + ', '.join(bad) if bad else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

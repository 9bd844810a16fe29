"""Load: N simulated people chatting with photos through the local Bot API server against the real bot
(`python -m bot`), real Redis (a private database) and real workers (`python -m model.worker`, tiny preset).

Each person sends a photo with a question, then follow-ups after a short pause until the run's time is up
(at least one). Latency is from the person's message to the bot's last edit of the answer. "lost" counts
turns that ended with no answer and no message saying why: it must be 0.

    python bench/load.py                       # 50 users, ~2-3 minutes on a 2-core CPU
    python bench/load.py --users 200 --workers 2 --duration 120 --flood-limits

Prints its figure last: replies/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, claimed_database  # noqa: E402
from bench.users import Crowd, Figures  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=float, default=90.0,
                        help="seconds people keep sending follow-ups (each still sends at least two turns)")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which people arrive")
    parser.add_argument("--worker-threads", type=int, default=1,
                        help="OMP_NUM_THREADS of each worker; 0 = torch's default. The bot, the server and the "
                             "workers share this machine's cores: one thread keeps a worker from spinning against "
                             "the others (2 cores, budget lifted: 20.4 vs 18.1 replies/s)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="the bot's MAX_NEW_TOKENS")
    parser.add_argument("--think", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                        help="seconds a person waits after an answer before the next message")
    parser.add_argument("--bot-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra setting for the bot process, e.g. MAX_MESSAGES_PER_SECOND=100")
    parser.add_argument("--flood-limits", action="store_true",
                        help="the server enforces Telegram's flood limits (429 when the bot exceeds them)")
    parser.add_argument("--redis-url", help="default: a free database of the local Redis, flushed")
    parser.add_argument("--logs", type=Path, help="folder for the processes' logs (default: a temporary one)")
    return parser.parse_args()


async def run(args: argparse.Namespace, redis_url: str, logs: Path) -> Figures:
    threads = {"OMP_NUM_THREADS": str(args.worker_threads)} if args.worker_threads else {}
    stack = Stack(redis_url, logs, workers=args.workers, flood_limits=args.flood_limits, worker_env=threads,
                  bot_env={"MAX_NEW_TOKENS": str(args.max_new_tokens),
                           **dict(item.split("=", 1) for item in args.bot_setting)})
    async with stack:
        crowd = Crowd(stack, turn_timeout_s=max(120.0, args.duration), think_s=tuple(args.think))
        started = time.monotonic()
        await crowd.run(args.users, args.ramp, stop_at=started + args.duration)
        seconds = time.monotonic() - started
        held = await crowd.settle(within_s=60.0)
        await asyncio.sleep(2.0)  # anything arriving late (a duplicate) must be seen by the judge
        crowd.judge()
        crashed = stack.crashed()
        calls = stack.server.calls
        print(f"Bot API calls: {calls['sendMessage']} sendMessage, {calls['editMessageText']} editMessageText, "
              f"{sum(1 for r in stack.server.call_log if r.status == 429)} answered 429")
    figures = Figures.of(crowd.turns, seconds, stuck_users=len(held))
    if crashed:
        print(f"CRASHED: {', '.join(crashed)}")
    return figures


def report(figures: Figures, args: argparse.Namespace) -> None:
    extra = "".join(f", {item}" for item in args.bot_setting)
    threads = args.worker_threads or "torch default"
    print(f"{args.users} users, {args.workers} worker(s) ({threads} threads), tiny preset, MAX_NEW_TOKENS={args.max_new_tokens}{extra}, "
          f"think {args.think[0]:g}-{args.think[1]:g} s, {figures.seconds:.0f} s")
    print(f"turns sent: {figures.turns}   answered: {figures.answered}   told (errors shown): {figures.told}   "
          f"lost: {figures.lost}   duplicates: {figures.duplicates}   users left 'busy': {figures.stuck}")
    print(f"latency (message -> final answer): median {figures.percentile(0.5):.2f} s, "
          f"p95 {figures.percentile(0.95):.2f} s, max {max(figures.latencies, default=float('nan')):.2f} s")
    print(f"replies/s: {figures.answered / figures.seconds:.2f}")


def main() -> int:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="omnifusion-load-") as scratch:
        logs = args.logs or Path(scratch)
        if args.redis_url:
            figures = asyncio.run(run(args, args.redis_url, logs))
        else:
            with claimed_database() as redis_url:
                figures = asyncio.run(run(args, redis_url, logs))
    report(figures, args)
    return 0 if figures.lost == figures.duplicates == figures.stuck == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The demo model against its accuracy goals (issue 9, docs/demo-model.md), on held-out pictures it never saw.

    python bench/demo_world.py [--model model/checkpoints/demo] [--world runs/demo-bench] [--limit N]

Builds a held-out set of its own (build_eval: a seed no training run uses; reused when built before), answers
every dialog greedily through the serving engine, scores the answers with training/demo_world/scoring.py (the
same scorer `training/eval.py score --task demo` uses) and prints one line per goal: measured, goal, PASS/FAIL.
Also the seconds per answer on this CPU (batch 1, as one chat sees it). Exit status 1 when a goal fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from model.checkpoint import PACKAGED  # noqa: E402
from model.omnifusion import OmniFusion  # noqa: E402
from training.demo_world.build import build_eval  # noqa: E402
from training.demo_world.evaluate import answer, evaluate, read_items  # noqa: E402

# (what, key in the report or a function of it, goal, at least?)
GOALS = [("colour", "colour", 0.97), ("shape", "shape", 0.95), ("count 1-5", "count", 0.90),
         ("yes/no", "exists", 0.95), ("position", "position", 0.90), ("two photos", "two_photos", 0.85),
         ("follow-ups", "followup", 0.90), ("other programs: colour", "other_colour", 0.90),
         ("other programs: shape", "other_shape", 0.90)]


def goal_lines(report: dict) -> list[tuple[str, float, str, bool]]:
    """[(what, measured, goal text, met)] for every goal of the issue."""
    lines = []
    for what, key, goal in GOALS:
        if key in report:
            value = report[key]["accuracy"]
            lines.append((what, value, f">= {goal:.2f}", value >= goal))
    if "exists" in report and "yes_ratio" in report["exists"]:
        ratio = report["exists"]["yes_ratio"]
        lines.append(("yes-ratio", ratio, "0.45-0.55", 0.45 <= ratio <= 0.55))
    if "all/en" in report and "all/ru" in report:
        gap = report["all/en"]["accuracy"] - report["all/ru"]["accuracy"]
        lines.append(("English minus Russian", gap, "<= 0.05", gap <= 0.05))
    return lines


def seconds_per_answer(model, world: Path, n: int = 20) -> float:
    items = read_items(world / "eval.jsonl", n)
    start = time.perf_counter()
    answer(model, items, world, batch_size=1, progress=False)
    return (time.perf_counter() - start) / len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PACKAGED["demo"]))
    parser.add_argument("--world", default="runs/demo-bench", help="where the held-out set is drawn (reused)")
    parser.add_argument("--items", type=int, default=2700, help="held-out dialogs (150 per skill and language)")
    parser.add_argument("--other", type=int, default=300, help="pictures drawn by other programs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    world = build_eval(args.world, args.items, args.other)
    model = OmniFusion.from_pretrained(args.model, device="cpu", dtype=torch.float32)
    start = time.perf_counter()
    result = evaluate(model, world)
    elapsed = time.perf_counter() - start
    report = result["report"]
    print(f"\n{len(result['items'])} held-out dialogs from {world} answered in {elapsed:.0f} s by {args.model}")
    for key, value in report.items():
        if "/" not in key or key.startswith("all/"):
            print(f"  {key:14s} {value['accuracy']:.3f}  (n={value['n']})")
    print("\ngoal                          measured  goal        ")
    failed = 0
    for what, value, goal, met in goal_lines(report):
        failed += not met
        print(f"  {what:28s} {value:7.3f}   {goal:10s}  {'PASS' if met else 'FAIL'}")
    print(f"\nseconds per answer (batch 1, this CPU): {seconds_per_answer(model, world):.3f}")
    print(f"goals met: {len(goal_lines(report)) - failed}/{len(goal_lines(report))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

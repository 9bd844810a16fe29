"""The demo world as a task of training/eval.py:

    python training/eval.py run --task demo --model model/checkpoints/demo --questions runs/demo/world/eval.jsonl \
        --annotations runs/demo/world/eval_other.jsonl --image-root runs/demo/world
    python training/eval.py score --task demo --predictions preds.jsonl --questions runs/demo/world/eval.jsonl

--questions takes eval.jsonl, --annotations eval_other.jsonl (either or both); image paths in them are relative
to the world folder (--image-root). Metrics are per-skill accuracy (scoring.py), per language in the breakdown.
"""

from __future__ import annotations

from pathlib import Path

from training.demo_world import scoring
from training.evaluation.common import EvalError, Question, Scores, need, non_empty, read_jsonl


def _question(record: dict, where: str) -> Question:
    need(record, {"id": str, "skill": str, "lang": str, "messages": list, "expect": dict}, where)
    images, messages = [], []
    for m in record["messages"]:
        content = []
        for part in need(m, {"role": str, "content": list}, where)["content"]:
            if part.get("type") == "image":
                content.append({"type": "image", "key": str(len(images))})
                images.append(Path(need(part, {"key": str}, where)["key"]))
            else:
                content.append(part)
        messages.append({"role": m["role"], "content": content})
    return Question(record["id"], messages, images, record["expect"], {"id": record["id"]},
                    {"skill": record["skill"], "lang": record["lang"]})


def load(sources) -> list[Question]:
    files = [f for f in [sources.questions, *sources.annotations] if f is not None]
    if not files:
        raise EvalError("give --questions runs/demo/world/eval.jsonl (and eval_other.jsonl with --annotations)")
    questions = []
    for path in files:
        for n, record in enumerate(read_jsonl(Path(path), "demo questions"), 1):
            questions.append(_question(record, f"{path} line {n}"))
    return non_empty(questions, ", ".join(map(str, files)))


def score(pairs: list[tuple[Question, str]], sources=None) -> Scores:
    items = [{"skill": q.info["skill"], "lang": q.info["lang"], "expect": q.gold} for q, _ in pairs]
    report = scoring.report(items, [p for _, p in pairs])
    metrics = {k: v["accuracy"] for k, v in report.items() if "/" not in k}
    if "yes_ratio" in report.get("exists", {}):
        metrics["exists_yes_ratio"] = report["exists"]["yes_ratio"]
    breakdown = {k: {"accuracy": v["accuracy"], "n": v["n"]} for k, v in report.items() if "/" in k}
    rows = [{"id": q.key, "skill": q.info["skill"], "lang": q.info["lang"], "answer": p,
             "right": scoring.is_right(p, q.gold)} for q, p in pairs]
    return Scores(metrics, breakdown, rows, {"questions": len(pairs)})

"""Answering the held-out demo-world dialogs with a model and scoring them per skill (scoring.py).

The items are eval.jsonl / eval_other.jsonl written by build.py: protocol messages whose image parts name
files under the world folder, and the expected value of the last answer. Answers are greedy and batched
through the serving engine (training/evaluation/runner.py), exactly as the worker would produce them.
"""

from __future__ import annotations

import json
from pathlib import Path

from model.serving.engine import SamplingParams
from training.demo_world import scoring
from training.evaluation.runner import Prompt, answer_all


def read_items(path: Path, limit: int | None = None) -> list[dict]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items[:limit] if limit else items


def as_prompt(item: dict, root: Path) -> Prompt:
    """Image parts keyed by file -> keyed by index into the prompt's image list (the runner's convention)."""
    images, messages = [], []
    for m in item["messages"]:
        content = []
        for part in m["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "key": str(len(images))})
                images.append(root / part["key"])
            else:
                content.append(part)
        messages.append({"role": m["role"], "content": content})
    return Prompt(messages, images)


def answer(model, items: list[dict], root: Path, batch_size: int = 32, progress: bool = True,
           transform=None) -> list[str]:
    """Greedy answers; `transform(prompt) -> prompt` changes what the model is shown (the ablations)."""
    prompts = [as_prompt(i, root) for i in items]
    if transform:
        prompts = [transform(p) for p in prompts]
    return answer_all(model, prompts, SamplingParams(max_new_tokens=48, temperature=0.0), batch_size, progress)


def evaluate(model, world: str | Path, files=("eval.jsonl", "eval_other.jsonl"), limit: int | None = None,
             batch_size: int = 32, progress: bool = True, transform=None) -> dict:
    """-> {"report": per-skill accuracy, "items": [...with "answer"]}."""
    world = Path(world)
    items = [i for f in files if (world / f).is_file() for i in read_items(world / f, limit)]
    answers = answer(model, items, world, batch_size, progress, transform)
    for item, text in zip(items, answers, strict=True):
        item["answer"] = text
        item["right"] = scoring.is_right(text, item["expect"])
    return {"report": scoring.report(items, answers), "items": items}

"""POPE (object hallucination), scored as LLaVA's `llava/eval/eval_pope.py` does.

Parsing: keep the text before the first "." (the first sentence), drop commas, split on single spaces; the
answer is "no" if one of the words is "No", "no" or "not", else "yes" (so "NO" and "Nope" read as yes, as
there). Per split (random, popular, adversarial): accuracy, precision, recall, F1 and the ratio of "yes"
predictions; the headline figures are the means over the splits. A zero denominator gives 0 (as lmms-eval;
LLaVA's script would divide by zero).

Files: the POPE repository's `coco_pope_<split>.json`, JSON lines `{question_id, image, text, label}`; the split
is the record's `category` if it has one, else the part of the file name after "pope_". Question ids restart in
every split file, so a prediction names its split in `category` unless only one split is scored.
"""

from __future__ import annotations

from pathlib import Path

from training.evaluation.common import (
    EvalError,
    Question,
    Scores,
    image_name,
    mean,
    need,
    read_jsonl,
)

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def parse_yes_no(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if {"No", "no", "not"} & set(words) else "yes"


def split_of(path: Path) -> str:
    stem = Path(path).stem
    return stem.split("pope_", 1)[1] if "pope_" in stem else stem


def load_pope(annotation_paths: list[Path], image_pattern: str | None) -> list[Question]:
    if not annotation_paths:
        raise EvalError("give --annotations: one or more coco_pope_<split>.json files")
    out = []
    for path in annotation_paths:
        for i, r in enumerate(read_jsonl(path, "--annotations (POPE)")):
            where = f"{path} line {i + 1}"
            need(r, {"question_id": (int, str), "image": str, "text": str, "label": str}, where)
            if r["label"] not in ("yes", "no"):
                raise EvalError(f"{where}: label {r['label']!r} is neither 'yes' nor 'no'")
            split = r.get("category") if isinstance(r.get("category"), str) else split_of(path)
            image = image_name(image_pattern or "{image}", where, image=r["image"])
            out.append(Question(f"{split}/{r['question_id']}", r["text"], [image],
                                r["label"], {"question_id": r["question_id"], "category": split},
                                {"split": split}))
    return out


def prediction_key(splits: set[str]):
    def key(record: dict, where: str) -> str:
        need(record, {"question_id": (int, str)}, where)
        split = record.get("category")
        if split is None:
            if len(splits) != 1:
                raise EvalError(f"{where}: no 'category' to tell which of the splits {sorted(splits)} it is for")
            split = next(iter(splits))
        return f"{split}/{record['question_id']}"
    return key


def split_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """[(predicted yes|no, label yes|no)] -> the five figures and the four counts."""
    tp = sum(p == "yes" and g == "yes" for p, g in pairs)
    fp = sum(p == "yes" and g == "no" for p, g in pairs)
    tn = sum(p == "no" and g == "no" for p, g in pairs)
    fn = sum(p == "no" and g == "yes" for p, g in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / len(pairs), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": (tp + fp) / len(pairs), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def score(pairs: list[tuple[Question, str]]) -> Scores:
    rows = [{"key": q.key, "prediction": text, "parsed": parse_yes_no(text), "label": q.gold, **q.info}
            for q, text in pairs]
    splits = sorted({r["split"] for r in rows})
    per_split = {s: split_metrics([(r["parsed"], r["label"]) for r in rows if r["split"] == s]) for s in splits}
    metrics = {m: mean(per_split[s][m] for s in splits) for m in METRICS}
    breakdown = {"split": {s: {m: v for m, v in per_split[s].items() if m in METRICS} for s in splits}}
    counts = {f"{s}_{c}": per_split[s][c] for s in splits for c in ("tp", "fp", "tn", "fn")}
    return Scores(metrics, breakdown, rows, counts)

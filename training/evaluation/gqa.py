"""GQA accuracy: the official `eval.py`'s exact match on balanced questions, after LLaVA's normalisation.

LLaVA's `scripts/convert_gqa_for_eval.py` writes `prediction = text.rstrip('.').lower()`; the official script
then counts `prediction == answer` over the questions with `isBalanced`, and splits the figure into binary
(every structural type but "query") and open questions, and per structural and semantic type. (Its
consistency, validity, plausibility and grounding need the scene graphs and choices files: not computed.)

Files: `testdev_balanced_questions.json` (qid -> {imageId, question, answer, isBalanced, types}); images
<image root>/<imageId>.jpg. Predictions: the official `[{"questionId", "prediction"}]` or LLaVA's JSON lines.
"""

from __future__ import annotations

from pathlib import Path

from training.evaluation.common import (
    EvalError,
    Question,
    Scores,
    grouped_mean,
    image_name,
    mean,
    need,
    read_json,
)


def normalise(text: str) -> str:
    return text.rstrip(".").lower()


def load_gqa(questions_path: Path, image_pattern: str | None) -> list[Question]:
    questions = read_json(questions_path, "--questions (e.g. testdev_balanced_questions.json)")
    if not isinstance(questions, dict):
        raise EvalError(f"{questions_path}: not a JSON object of questions (GQA's layout)")
    out = []
    for qid, q in questions.items():
        where = f"{questions_path} question {qid}"
        need(q, {"imageId": str, "question": str, "answer": str}, where)
        if not q.get("isBalanced", True):  # the official accuracy counts balanced questions only
            continue
        types = q.get("types") if isinstance(q.get("types"), dict) else {}
        structural = types.get("structural")
        info = {"structural": structural, "semantic": types.get("semantic"),
                "answer_type": None if structural is None else ("open" if structural == "query" else "binary")}
        image = image_name(image_pattern or "{image_id}.jpg", where, image_id=q["imageId"])
        out.append(Question(str(qid), q["question"], [image], q["answer"],
                            {"questionId": str(qid)}, info))
    return out


def prediction_key(record: dict, where: str) -> str:
    for name in ("questionId", "question_id"):
        if isinstance(record.get(name), int | str) and not isinstance(record.get(name), bool):
            return str(record[name])
    raise EvalError(f"{where}: no 'questionId' (or 'question_id')")


def score(pairs: list[tuple[Question, str]]) -> Scores:
    rows = [{"key": q.key, "prediction": text, "answer": q.gold, "correct": float(normalise(text) == q.gold),
             **q.info} for q, text in pairs]
    metrics = {"accuracy": mean(r["correct"] for r in rows)}
    breakdown = {by: grouped_mean(rows, by, "correct") for by in ("answer_type", "structural", "semantic")}
    return Scores(metrics, {k: v for k, v in breakdown.items() if v}, rows)

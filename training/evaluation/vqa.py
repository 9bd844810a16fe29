"""VQA accuracy for VQAv2, OK-VQA, VizWiz and TextVQA, from their official files.

Accuracy of one prediction = the mean, over the 10 leave-one-out subsets of the annotators' answers, of
min(#matching answers in the subset / 3, 1) (vqaEval.py; m4c_evaluator.py and VizWiz's evaluation use the
same formula). Subsets leave out one answer by position, which is what vqaEval.py's `item != gtAnsDatum`
does on the official files (every answer dict has its own `answer_id`).

`processing` chooses how the two sides are normalised (vqa_text.py):
- "official": the data set's own script as it is: vqaEval.py, or for VizWiz its fork (`vizwiz_prepare`).
- "evalai": the prediction through EvalAI's processor first, then the official script: what an evaluation
  server gives a LLaVA submission (LLaVA's convert_vqav2/vizwiz_for_submission.py process answers so).
- "m4c": both sides through EvalAI's processor, always: LLaVA's TextVQA evaluator and lmms-eval's TextVQA and
  OK-VQA tasks.
"""

from __future__ import annotations

from pathlib import Path

from training.evaluation.common import (
    SHORT_ANSWER,
    EvalError,
    Question,
    Scores,
    grouped_mean,
    image_name,
    mean,
    need,
    read_json,
)
from training.evaluation.vqa_text import evalai_process, official_prepare

PROCESSING = ("official", "evalai", "m4c")
VIZWIZ_SUFFIX = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT_ANSWER


def leave_one_out(prediction: str, answers: list[str]) -> float:
    if not answers:
        return 0.0
    matches = sum(a == prediction for a in answers)
    # Leaving out answer i removes one match exactly when answer i itself matches.
    return mean(min(1.0, (matches - (a == prediction)) / 3) for a in answers)


def accuracy(prediction: str, answers: list[str], processing: str = "official", official=official_prepare) -> float:
    """`official`: the data set's script (official_prepare, or vizwiz_prepare for VizWiz)."""
    if processing == "official":
        return leave_one_out(*official(prediction, answers))
    if processing == "evalai":
        return leave_one_out(*official(evalai_process(prediction), answers))
    if processing == "m4c":
        return leave_one_out(evalai_process(prediction), [evalai_process(a) for a in answers])
    raise ValueError(f"processing must be one of {PROCESSING}, not {processing!r}")


def score(pairs: list[tuple[Question, str]], processing: str, official=official_prepare) -> Scores:
    rows = [{"key": q.key, "prediction": text, "accuracy": accuracy(text, q.gold, processing, official), **q.info}
            for q, text in pairs]
    breakdown = {by: grouped_mean(rows, by, "accuracy") for by in ("answer_type", "question_type")
                 if any(by in r for r in rows)}
    return Scores({"accuracy": mean(r["accuracy"] for r in rows)}, breakdown, rows)


def _answers(record: dict, where: str) -> list[str]:
    answers = record["answers"]
    texts = [a.get("answer") if isinstance(a, dict) else a for a in answers]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise EvalError(f"{where}: 'answers' must be strings or {{'answer': str}} objects")
    return texts


def load_coco_vqa(questions_path: Path, annotations_path: Path, image_pattern: str | None) -> list[Question]:
    """VQAv2 and OK-VQA: `{"questions": [...], "data_subtype": "val2014"}` + `{"annotations": [...]}`, images
    COCO_<subtype>_<12-digit image id>.jpg."""
    questions = read_json(questions_path, "--questions (e.g. v2_OpenEnded_mscoco_val2014_questions.json)")
    annotations = read_json(annotations_path, "--annotations (e.g. v2_mscoco_val2014_annotations.json)")
    need(questions, {"questions": list}, f"{questions_path}")
    need(annotations, {"annotations": list}, f"{annotations_path}")
    subtype = questions.get("data_subtype", "val2014")
    pattern = image_pattern or "COCO_{subtype}_{image_id:012d}.jpg"
    gold = {}
    for i, a in enumerate(annotations["annotations"]):
        where = f"{annotations_path} annotation {i}"
        need(a, {"question_id": int, "answers": list}, where)
        gold[a["question_id"]] = (_answers(a, where), a)
    out = []
    for i, q in enumerate(questions["questions"]):
        where = f"{questions_path} question {i}"
        need(q, {"question_id": int, "image_id": int, "question": str}, where)
        if q["question_id"] not in gold:
            raise EvalError(f"{where}: question {q['question_id']} has no annotation in {annotations_path}")
        answers, a = gold.pop(q["question_id"])
        image = image_name(pattern, where, image_id=q["image_id"], subtype=subtype)
        info = {k: a[k] for k in ("answer_type", "question_type") if isinstance(a.get(k), str)}
        out.append(Question(str(q["question_id"]), q["question"], [image], answers,
                            {"question_id": q["question_id"]}, info))
    if gold:
        raise EvalError(f"{len(gold)} annotations have no question in {questions_path}, e.g. {next(iter(gold))}")
    return out


def load_vizwiz(annotations_path: Path, image_pattern: str | None) -> list[Question]:
    """VizWiz `val.json`: a list of {image, question, answers: [{answer, answer_confidence}], answer_type}."""
    records = read_json(annotations_path, "--annotations (VizWiz val.json)")
    if not isinstance(records, list):
        raise EvalError(f"{annotations_path}: not a JSON list (the VizWiz annotation layout)")
    out = []
    for i, r in enumerate(records):
        where = f"{annotations_path} item {i}"
        need(r, {"image": str, "question": str, "answers": list}, where)
        image = image_name(image_pattern or "{image}", where, image=r["image"])
        info = {"answer_type": r["answer_type"]} if isinstance(r.get("answer_type"), str) else {}
        out.append(Question(r["image"], r["question"], [image], _answers(r, where),
                            {"image": r["image"]}, info))
    return out


def load_textvqa(annotations_path: Path, image_pattern: str | None) -> list[Question]:
    """TextVQA `TextVQA_0.5.1_val.json`: {"data": [{question_id, question, image_id, answers: [10 str]}]}."""
    data = need(read_json(annotations_path, "--annotations (TextVQA_0.5.1_val.json)"), {"data": list},
                str(annotations_path))["data"]
    out = []
    for i, r in enumerate(data):
        where = f"{annotations_path} data item {i}"
        need(r, {"question_id": int, "question": str, "image_id": str, "answers": list}, where)
        image = image_name(image_pattern or "{image_id}.jpg", where, image_id=r["image_id"])
        out.append(Question(str(r["question_id"]), r["question"], [image],
                            _answers(r, where), {"question_id": r["question_id"]}))
    return out

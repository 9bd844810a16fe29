"""ScienceQA, scored as LLaVA's `llava/eval/eval_science_qa.py` parses option letters.

A prediction is read as a letter when it is exactly one of A-E, when it starts with "<letter>. ", or when
"The answer is <capital letter>." occurs exactly once; anything else, or a letter past the problem's last
choice, is wrong. Reported: accuracy over the split and over its problems with an image (`img_accuracy`,
LLaVA's "IMG-Accuracy"; lmms-eval's `scienceqa_img`, the figure LMM tables usually give).

Files: the official `problems.json` (pid -> {question, choices, answer (index), hint, image, subject, ...}) and
`pid_splits.json` beside it (or --questions); images at <image root>/<pid>/image.png (LLaVA's images/test/).
Prompt (ours; the scoring does not depend on it) as lmms-eval and LLaVA-1.5 build it: "Context: <hint>" when
there is one, the question, "A. <choice>" lines, then (the task's suffix) "Answer with the option's letter from
the given choices directly."
"""

from __future__ import annotations

import re
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

OPTIONS = ("A", "B", "C", "D", "E")
LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
THE_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def parse_letter(text: str) -> str:
    """-> the letter, or "FAILED" (LLaVA's word)."""
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = THE_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def is_correct(text: str, choices: int, answer: int) -> bool:
    letter = parse_letter(text)
    return letter in OPTIONS[:choices] and OPTIONS.index(letter) == answer


def prompt(problem: dict) -> str:
    context = f"Context: {problem['hint']}\n" if problem.get("hint") else ""
    choices = "\n".join(f"{letter}. {c}" for letter, c in zip(OPTIONS, problem["choices"], strict=False))
    return f"{context}{problem['question']}\n{choices}"


def load_scienceqa(problems_path: Path, splits_path: Path | None, split: str,
                   image_pattern: str | None) -> list[Question]:
    problems = read_json(problems_path, "--annotations (ScienceQA problems.json)")
    if not isinstance(problems, dict):
        raise EvalError(f"{problems_path}: not a JSON object of problems (ScienceQA problems.json)")
    splits_path = splits_path or Path(problems_path).with_name("pid_splits.json")
    splits = read_json(splits_path, "ScienceQA pid_splits.json (beside problems.json, or --questions)")
    if not isinstance(splits, dict) or not isinstance(splits.get(split), list):
        raise EvalError(f"{splits_path} has no split {split!r} (it has {sorted(splits)[:8]})")
    out = []
    for pid in map(str, splits[split]):
        where = f"{problems_path} problem {pid}"
        if pid not in problems:
            raise EvalError(f"{where}: listed in {splits_path} but not in {problems_path}")
        p = need(problems[pid], {"question": str, "choices": list, "answer": int}, where)
        if not 2 <= len(p["choices"]) <= len(OPTIONS) or not 0 <= p["answer"] < len(p["choices"]):
            raise EvalError(f"{where}: {len(p['choices'])} choices and answer {p['answer']}")
        has_image = isinstance(p.get("image"), str)
        images = [image_name(image_pattern or "{pid}/{image}", where, pid=pid, image=p["image"])] \
            if has_image else []
        info = {"has_image": has_image, "subject": p.get("subject")}
        out.append(Question(pid, prompt(p), images, (len(p["choices"]), p["answer"]), {"question_id": pid}, info))
    return out


def score(pairs: list[tuple[Question, str]]) -> Scores:
    rows = [{"key": q.key, "prediction": text, "parsed": parse_letter(text), "answer": OPTIONS[q.gold[1]],
             "correct": float(is_correct(text, *q.gold)), **q.info} for q, text in pairs]
    with_image = [r["correct"] for r in rows if r["has_image"]]
    metrics = {"accuracy": mean(r["correct"] for r in rows), "img_accuracy": mean(with_image)}
    return Scores(metrics, {"subject": grouped_mean(rows, "subject", "correct")}, rows,
                  {"with_image": len(with_image), "failed_to_parse": sum(r["parsed"] == "FAILED" for r in rows)})

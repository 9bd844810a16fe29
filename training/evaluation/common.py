"""What every task shares: strict readers of the official files, the question record, prediction matching.

Everything here fails loudly (`EvalError`, one line for people) instead of scoring what it could read: a file
that gives 0 questions, a record without the fields its layout has, an image that is not there, a prediction
for a question the annotations do not have, or a question without a prediction (unless asked for a partial
score, which then says so).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHORT_ANSWER = "Answer the question using a single word or phrase."  # LLaVA-1.5's and lmms-eval's suffix
TEXT_FIELDS = ("answer", "text", "prediction", "pred_answer")  # official results, LLaVA answers, GQA, m4c


class EvalError(Exception):
    """Bad input for an evaluation; the message says what and where."""


@dataclass
class Question:
    key: Hashable  # what a prediction is matched by
    prompt: str | list[dict]  # the text after the images, or a whole dialog in the protocol's message format
    images: list[Path]
    gold: Any  # whatever the task's scorer needs
    ids: dict  # the identifying fields written into each prediction record
    info: dict = field(default_factory=dict)  # breakdown fields (question type, split, ...)


@dataclass
class Scores:
    metrics: dict[str, float]  # the headline figures, fractions in [0, 1] unless named otherwise
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. per answer type
    rows: list[dict] = field(default_factory=list)  # one per scored question
    counts: dict[str, int] = field(default_factory=dict)


def read_json(path: Path, what: str) -> Any:
    if path is None:
        raise EvalError(f"give the {what}")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{what}: no such file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{what}: cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise EvalError(f"{what}: {path} is not JSON ({exc})") from None


def read_jsonl(path: Path, what: str) -> list[dict]:
    """One JSON object per non-empty line; a line that is not one stops everything, with its number."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalError(f"{what}: no such file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{what}: cannot read {path}: {exc}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{what}: {path} line {number} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise EvalError(f"{what}: {path} line {number} is not a JSON object")
        records.append(record)
    return records


def read_records(path: Path, what: str) -> list[dict]:
    """A JSON list of objects (the official results layout) or JSON lines (LLaVA's answer files)."""
    if path is None:
        raise EvalError(f"give the {what}")
    head = Path(path).read_text(encoding="utf-8")[:4096].lstrip() if Path(path).is_file() else ""
    if head.startswith("["):
        records = read_json(path, what)
        bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if bad:
            raise EvalError(f"{what}: {path} item {bad[0]} is not a JSON object")
        return records
    return read_jsonl(path, what)


def need(record: Any, fields: dict[str, type | tuple], where: str) -> dict:
    """`record` must be an object with these fields of these types; else an error naming the first problem."""
    if not isinstance(record, dict):
        raise EvalError(f"{where}: not a JSON object")
    for name, kind in fields.items():
        if name not in record:
            raise EvalError(f"{where}: no {name!r} field")
        if not isinstance(record[name], kind) or isinstance(record[name], bool) and kind is not bool:
            raise EvalError(f"{where}: {name!r} is {type(record[name]).__name__}, not {_names(kind)}")
    return record


def _names(kind) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def non_empty(questions: list[Question], source: str) -> list[Question]:
    if not questions:
        raise EvalError(f"{source} gave 0 questions")
    return questions


def image_name(pattern: str, where: str, **fields) -> Path:
    """The image file of a record, relative to --image-root."""
    try:
        return Path(pattern.format(**fields))
    except (KeyError, ValueError, IndexError) as exc:
        raise EvalError(f"--image-pattern {pattern!r} does not fit {where} (fields: {', '.join(fields)}): "
                        f"{exc!r}") from None


def resolve_images(questions: list[Question], root: Path | None) -> None:
    """Make image names absolute under `root` and check, before any model work, that every file is there."""
    if root is None and any(q.images for q in questions):
        raise EvalError("give --image-root: the questions have images")
    for q in questions:
        q.images = [Path(root) / p for p in q.images]
    missing = [p for q in questions for p in q.images if not p.is_file()]
    if missing:
        raise EvalError(f"{len(missing)} image files do not exist, e.g. {missing[0]}"
                        " (wrong --image-root or --image-pattern?)")


def prediction_text(record: dict, where: str) -> str:
    for name in TEXT_FIELDS:
        if isinstance(record.get(name), str):
            return record[name]
    raise EvalError(f"{where}: no answer text (one of the fields {', '.join(TEXT_FIELDS)})")


def match(questions: list[Question], predictions: dict[Hashable, Any], partial: bool = False
          ) -> list[tuple[Question, Any]]:
    """Pair every question with its prediction. Unknown predictions always fail; missing ones fail unless
    `partial`, where only the predicted questions are scored."""
    known = {q.key for q in questions}
    unknown = [k for k in predictions if k not in known]
    if unknown:
        raise EvalError(f"{len(unknown)} predictions are for questions the annotations do not have, "
                        f"e.g. {unknown[0]!r}")
    pairs = [(q, predictions[q.key]) for q in questions if q.key in predictions]
    if len(pairs) < len(questions) and not partial:
        missing = next(q.key for q in questions if q.key not in predictions)
        raise EvalError(f"{len(questions) - len(pairs)} of {len(questions)} questions have no prediction, "
                        f"e.g. {missing!r} (--partial scores only the predicted ones)")
    if not pairs:
        raise EvalError("no question has a prediction")
    return pairs


def index_predictions(records: list[dict], key_of, value_of, source: str) -> dict:
    """key -> value, refusing duplicates (which one would count?)."""
    out = {}
    for i, record in enumerate(records):
        where = f"{source} record {i + 1}"
        key = key_of(record, where)
        if key in out:
            raise EvalError(f"{where}: a second prediction for {key!r}")
        out[key] = value_of(record, where)
    if not out:
        raise EvalError(f"{source} holds 0 predictions")
    return out


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def grouped_mean(rows: list[dict], by: str, value: str) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        if row.get(by) is not None:
            groups.setdefault(str(row[by]), []).append(row[value])
    return {k: mean(v) for k, v in sorted(groups.items())}

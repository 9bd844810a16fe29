"""The task registry: how each benchmark reads its official files, matches predictions and scores them.

A task is data plus four functions; adding one (e.g. the project's own `demo` world) is `register(Task(...))`
with a loader returning `Question`s and a scorer over (question, prediction) pairs. Generation tasks are
answered by runner.answer_all, ranking tasks by runner.score_candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.evaluation import gqa, pope, scienceqa, visdial, vqa
from training.evaluation.common import SHORT_ANSWER, EvalError, Question, Scores, need, prediction_text
from training.evaluation.vqa_text import official_prepare, vizwiz_prepare


@dataclass
class Sources:
    """What the command line says about the data; each task reads the fields it needs."""
    questions: Path | None = None
    annotations: list[Path] = field(default_factory=list)
    dense_annotations: Path | None = None
    image_pattern: str | None = None
    split: str = "test"
    processing: str | None = None  # VQA answer processing; None: the task's default
    dense_rounds_only: bool = False

    def annotation(self, what: str) -> Path:
        if len(self.annotations) != 1:
            raise EvalError(f"give one --annotations file ({what})")
        return self.annotations[0]


KeyOf = Callable[[dict, str], str]


@dataclass(frozen=True)
class Task:
    name: str
    kind: Literal["generate", "rank"]
    load: Callable[[Sources], list[Question]]
    score: Callable[[list[tuple[Question, Any]], Sources], Scores]
    key: Callable[[list[Question]], KeyOf] = lambda questions: question_id_key
    value: Callable[[dict, str], Any] = prediction_text
    default_processing: str | None = None  # VQA tasks only
    max_new_tokens: int = 16
    suffix: str = SHORT_ANSWER  # a line added after every question (LLaVA's and lmms-eval's prompt for the task)
    about: str = ""

    def prompt(self, question: Question, suffix: str | None = None) -> str | list[dict]:
        """The question as the model gets it; `suffix` replaces the task's own ("" for none)."""
        suffix = self.suffix if suffix is None else suffix
        if isinstance(question.prompt, list) or not suffix:
            return question.prompt
        return f"{question.prompt}\n{suffix}"


def question_id_key(record: dict, where: str) -> str:
    return str(need(record, {"question_id": (int, str)}, where)["question_id"])


def _vqa(name: str, load, processing: str, about: str, key=None, suffix: str = SHORT_ANSWER,
         official=official_prepare) -> Task:
    def score(pairs, sources: Sources) -> Scores:
        return vqa.score(pairs, sources.processing or processing, official)

    return Task(name, "generate", load, score, key or (lambda questions: question_id_key),
                default_processing=processing, suffix=suffix, about=about)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in TASKS:
        raise EvalError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}, captions")
    return TASKS[name]


def _image_key(questions):
    return lambda record, where: need(record, {"image": str}, where)["image"]


register(_vqa("vqav2", lambda s: vqa.load_coco_vqa(s.questions, s.annotation("VQAv2 annotations"),
                                                     s.image_pattern),
              "evalai", "VQAv2 val: --questions v2_OpenEnded_mscoco_val2014_questions.json --annotations "
                        "v2_mscoco_val2014_annotations.json, images COCO_val2014_*.jpg"))
register(_vqa("okvqa", lambda s: vqa.load_coco_vqa(s.questions, s.annotation("OK-VQA annotations"),
                                                     s.image_pattern),
              "m4c", "OK-VQA val: --questions OpenEnded_mscoco_val2014_questions.json --annotations "
                     "mscoco_val2014_annotations.json, images COCO_val2014_*.jpg"))
register(_vqa("vizwiz", lambda s: vqa.load_vizwiz(s.annotation("VizWiz val.json"), s.image_pattern),
              "evalai", "VizWiz val: --annotations val.json, images as named there", key=_image_key,
              suffix=vqa.VIZWIZ_SUFFIX, official=vizwiz_prepare))
register(_vqa("textvqa", lambda s: vqa.load_textvqa(s.annotation("TextVQA_0.5.1_val.json"), s.image_pattern),
              "m4c", "TextVQA val: --annotations TextVQA_0.5.1_val.json, images <image_id>.jpg"))
register(Task("pope", "generate", lambda s: pope.load_pope(s.annotations, s.image_pattern),
              lambda pairs, s: pope.score(pairs),
              key=lambda questions: pope.prediction_key({q.info["split"] for q in questions}),
              about="POPE: --annotations coco_pope_random.json coco_pope_popular.json coco_pope_adversarial.json, "
                    "COCO val2014 images"))
register(Task("scienceqa", "generate",
              lambda s: scienceqa.load_scienceqa(s.annotation("ScienceQA problems.json"), s.questions, s.split,
                                                 s.image_pattern),
              lambda pairs, s: scienceqa.score(pairs), max_new_tokens=8, suffix=scienceqa.LETTER_SUFFIX,
              about="ScienceQA: --annotations problems.json (pid_splits.json beside it) --split test, "
                    "images <pid>/image.png"))
register(Task("gqa", "generate", lambda s: gqa.load_gqa(s.questions, s.image_pattern),
              lambda pairs, s: gqa.score(pairs), key=lambda questions: gqa.prediction_key,
              about="GQA: --questions testdev_balanced_questions.json, images <imageId>.jpg"))
register(Task("visdial", "rank",
              lambda s: visdial.load_visdial(s.annotation("visdial_1.0_val.json"), s.dense_annotations,
                                             s.image_pattern, s.dense_rounds_only),
              lambda pairs, s: visdial.score(pairs), key=lambda questions: visdial.prediction_key,
              value=visdial.prediction_ranks, suffix="",
              about="VisDial v1.0 val: --annotations visdial_1.0_val.json --dense-annotations "
                    "visdial_1.0_val_dense_annotations.json, images VisualDialog_val2018_*.jpg"))


def _demo() -> Task:
    from training.demo_world import eval_task

    return Task("demo", "generate", eval_task.load, eval_task.score, key=lambda questions: question_id_key_demo,
                max_new_tokens=48, suffix="",
                about="the project's picture world (docs/demo-model.md): --questions runs/demo/world/eval.jsonl "
                      "[--annotations runs/demo/world/eval_other.jsonl]; per-skill accuracy")


def question_id_key_demo(record: dict, where: str) -> str:
    return str(need(record, {"id": str}, where)["id"])


register(_demo())

"""Evaluate a checkpoint on the published benchmarks, or score a predictions file with no model at all.

    python training/eval.py run   --task textvqa --model runs/stage2 --annotations TextVQA_0.5.1_val.json \\
                                  --image-root textvqa/train_images
    python training/eval.py score --task vqav2 --predictions preds.jsonl --questions q.json --annotations a.json
    python training/eval.py run   --task captions --model runs/stage2 --annotations val_captions.jsonl
    python training/eval.py tasks

Tasks: vqav2, okvqa, vizwiz, textvqa (VQA accuracy), pope, scienceqa, gqa, visdial (candidate ranking) and
captions (held-out caption loss). Each reads its benchmark's official files; which official script each
scorer follows is in docs/evaluation.md. Writes JSON (every prediction included) and a markdown table beside
the published numbers. Exit codes: 0 done, 2 bad input (one line on stderr), 1 the model did not load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without `pip install -e .`

from training.evaluation import tasks as registry  # noqa: E402 (after the path fix)
from training.evaluation.common import (  # noqa: E402
    EvalError,
    index_predictions,
    match,
    non_empty,
    read_records,
    resolve_images,
)
from training.evaluation.report import write  # noqa: E402
from training.evaluation.vqa import PROCESSING  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python training/eval.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="generate (or rank) with a model, then score")
    score = commands.add_parser("score", help="score a predictions file; no model needed")
    commands.add_parser("tasks", help="list the tasks and the files each one reads")
    for sub in (run, score):
        sub.add_argument("--task", required=True)
        sub.add_argument("--questions", type=Path, help="questions file (VQAv2/OK-VQA, GQA; ScienceQA's splits)")
        sub.add_argument("--annotations", type=Path, nargs="+", default=[], help="annotation file(s)")
        sub.add_argument("--dense-annotations", type=Path, help="VisDial dense relevance annotations")
        sub.add_argument("--image-pattern", help="image file name from a record's fields, e.g. '{image_id}.jpg'")
        sub.add_argument("--split", default="test", help="ScienceQA split (default test)")
        sub.add_argument("--answer-processing", choices=PROCESSING, help="VQA tasks; default: the task's own")
        sub.add_argument("--dense-rounds-only", action="store_true",
                         help="VisDial: only the rounds with dense annotations (NDCG; R@k over those rounds)")
        sub.add_argument("--out", type=Path, help="results JSON; the markdown table goes beside it (.md)")
    run.add_argument("--prompt-suffix", help="line added after each question (default: the task's; '' for none)")
    score.add_argument("--predictions", type=Path, required=True, help="JSON list or JSON lines")
    score.add_argument("--partial", action="store_true", help="score only the questions that have predictions")
    run.add_argument("--model", type=Path, help="checkpoint folder (our format)")
    run.add_argument("--preset", default="tiny", help="in-memory preset when there is no --model (tests)")
    run.add_argument("--image-root", type=Path, help="folder the image names are relative to")
    run.add_argument("--predictions", type=Path, help="where predictions go (default: beside --out)")
    run.add_argument("--resume", action="store_true", help="keep the predictions already in the file")
    run.add_argument("--limit", type=int, help="only the first N questions (smoke runs)")
    run.add_argument("--batch-size", type=int, default=16, help="prompts decoded together / candidates per pass")
    run.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the task's)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--caption-prompt", help="captions: default the one the model was trained with")
    run.add_argument("--max-length", type=int, default=2048, help="captions: context for the loss")
    return parser.parse_args(argv)


def sources(args) -> registry.Sources:
    return registry.Sources(args.questions, args.annotations, args.dense_annotations, args.image_pattern,
                            args.split, args.answer_processing, args.dense_rounds_only)


def settings(args, task: registry.Task | None) -> dict:
    out = {"split": args.split if args.task == "scienceqa" else None,
           "answer_processing": (args.answer_processing or task.default_processing) if task else None,
           "dense_rounds_only": args.dense_rounds_only or None}
    if args.command == "run":
        out |= {"max_new_tokens": max_new_tokens(args, task) if task and task.kind == "generate" else None,
                "prompt_suffix": (task.suffix if args.prompt_suffix is None else args.prompt_suffix) if task else None,
                "batch_size": args.batch_size, "limit": args.limit}
    return {k: v for k, v in out.items() if v is not None}


def max_new_tokens(args, task: registry.Task) -> int:
    return args.max_new_tokens or task.max_new_tokens


def score_file(args) -> int:
    task = registry.get(args.task)
    src = sources(args)
    questions = non_empty(task.load(src), f"the {args.task} files")
    records = read_records(args.predictions, "--predictions")
    predictions = index_predictions(records, task.key(questions), task.value, str(args.predictions))
    scores = task.score(match(questions, predictions, args.partial), src)
    out = args.out or args.predictions.with_suffix(".scores.json")
    source = {"predictions": str(args.predictions), "questions": len(questions), "partial": args.partial}
    print(write(out, task.name, scores, settings(args, task), source))
    print(f"written to {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


def run_model(args) -> int:
    task = None if args.task == "captions" else registry.get(args.task)
    out = args.out or (args.model / "eval" / f"{args.task}.json" if args.model else None)
    if out is None:
        raise EvalError("give --out (or --model, whose eval/ folder is the default)")
    questions = pending = None
    if task:
        questions = non_empty(task.load(sources(args)), f"the {args.task} files")[:args.limit]
        resolve_images(questions, args.image_root)  # every image is checked before the model loads
        predictions_path = args.predictions or out.with_suffix(".predictions.jsonl")
        pending = unanswered(task, questions, predictions_path, args.resume)
    from model.checkpoint import load_model

    try:
        model = load_model(args.preset, args.model, device=args.device)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 1
    source = {"model": str(args.model) if args.model else f"preset {args.preset}"}
    if task is None:
        from training.evaluation.captions import caption_loss, trained_caption_prompt

        prompt = args.caption_prompt if args.caption_prompt is not None else trained_caption_prompt(args.model)
        scores = caption_loss(model, src_one(args), args.image_root, prompt, args.batch_size, args.max_length)
        print(write(out, "captions", scores, {"caption_prompt": prompt}, source))
        return 0
    with predictions_path.open("a", encoding="utf-8") as sink:
        answer(model, task, pending, args, sink)
    records = read_records(predictions_path, "predictions")
    predictions = index_predictions(records, task.key(questions), task.value, str(predictions_path))
    scores = task.score(match(questions, predictions), sources(args))
    source |= {"predictions": str(predictions_path), "questions": len(questions)}
    print(write(out, task.name, scores, settings(args, task), source))
    print(f"written to {out}, {out.with_suffix('.md')} and {predictions_path}", file=sys.stderr)
    return 0


def src_one(args) -> Path:
    if len(args.annotations) != 1:
        raise EvalError("captions: give one --annotations file (held-out captions JSONL)")
    return args.annotations[0]


def unanswered(task, questions, path: Path, resume: bool) -> list:
    if not path.exists():
        return questions
    if not resume:
        raise EvalError(f"{path} exists: --resume to continue it, or remove it")
    done = index_predictions(read_records(path, "predictions"), task.key(questions), task.value, str(path)) \
        if path.stat().st_size else {}
    return [q for q in questions if q.key not in done]


def answer(model, task: registry.Task, questions: list, args, sink) -> None:
    """Predictions are appended as they come: an interrupted run keeps what it had (--resume)."""
    from model.serving.engine import SamplingParams
    from training.evaluation.runner import GenerationFailed, Prompt, answer_all, score_candidates
    from training.evaluation.visdial import ranks_from_scores

    def emit(record: dict) -> None:
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        sink.flush()

    prompts = [Prompt(task.prompt(q, args.prompt_suffix), q.images) for q in questions]
    if task.kind == "generate":
        params = SamplingParams(max_new_tokens=max_new_tokens(args, task), temperature=0.0)
        try:
            answer_all(model, prompts, params, args.batch_size,
                       on_answer=lambda i, text: emit({**questions[i].ids, "answer": text}))
        except GenerationFailed as exc:
            raise EvalError(f"question {questions[exc.index].key}: {exc} (answers so far are kept: "
                            "--resume continues)") from None
        return
    from tqdm import tqdm

    for q, p in zip(tqdm(questions, desc="ranking", unit="round"), prompts, strict=True):
        scores = score_candidates(model, p, q.gold[0], args.batch_size)
        emit({**q.ids, "ranks": ranks_from_scores(scores), "scores": scores})


def list_tasks() -> int:
    for name, task in sorted(registry.TASKS.items()):
        print(f"{name:<10} {task.about}")
    print(f"{'captions':<10} held-out caption loss: run --annotations val_captions.jsonl [--image-root DIR]")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "tasks":
            return list_tasks()
        return score_file(args) if args.command == "score" else run_model(args)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

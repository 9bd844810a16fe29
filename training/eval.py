"""python training/eval.py --model DIR [--captions FILE.jsonl] [--vqa FILE.jsonl] [--image-root DIR] [--out FILE]

- Held-out caption loss and perplexity: the training loss (mean cross-entropy per answer token, weighted by
  tokens over the whole file) on captions the model did not train on.
- VQA exact match: greedy answers to {"image", "question", "answer" | "answers": [...]} records, compared after
  the usual normalisation (lower case, no punctuation or articles, number words as digits). A prediction
  counts when it equals any of the reference answers.
Prints a table and writes everything, per-question predictions included, to JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without `pip install -e .`

NUMBERS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
ARTICLES = {"a", "an", "the"}
# LLaVA's short-answer instruction: VQA answers are a word or two, and exact match needs them that short.
SHORT_ANSWER = "Answer the question using a single word or phrase."


def normalize_answer(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<!\d)\.(?!\d)", " ", text)  # full stops go, decimal points stay
    text = text.translate(str.maketrans({c: " " for c in string.punctuation if c != "."}))
    words = [NUMBERS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """-> (records, lines that were not JSON objects)."""
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
    return records, bad


def caption_loss(model, path: Path, image_root: Path | None, caption_prompt: str, batch_size: int,
                 max_length: int) -> dict:
    import torch

    from training.data import DialogDataset, collate, load_samples
    from training.trainee import Trainee

    samples, report, root = load_samples(path, image_root, caption_prompt)
    dataset = DialogDataset(samples, model.tokenizer, model.config, max_length, root)
    trainee = Trainee(model, cached_features=False).eval()
    total, tokens, evaluated = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            report.add(batch.report)
            if not batch.dialogs:
                continue
            # The model's loss is a mean over answer tokens; weigh batches by their count for a file-wide mean.
            count = sum(sum(1 for lab in d.labels() if lab != -100) for d in batch.dialogs)
            total += trainee(batch.to(model.device)).float().item() * count
            tokens += count
            evaluated += len(batch)
    loss = total / tokens if tokens else float("nan")
    return {"caption_loss": loss, "caption_perplexity": math.exp(loss) if tokens else float("nan"),
            "caption_tokens": tokens, "caption_samples": evaluated, "caption_skipped": dict(report.skipped)}


def vqa_accuracy(model, path: Path, image_root: Path | None, batch_size: int, max_new_tokens: int,
                 suffix: str) -> dict:
    import torch

    from model.dialog import encode_dialog
    from model.serving.engine import SamplingParams, generate
    from training.data import read_image

    records, bad = read_jsonl(path)
    root = image_root or path.parent
    skipped, rows = {"bad_record": bad}, []
    for r in records:
        answers = r.get("answers") or ([r["answer"]] if "answer" in r else [])
        answers = [a["answer"] if isinstance(a, dict) else a for a in answers]  # VQAv2 stores dicts
        if not isinstance(r.get("question"), str) or not answers or not all(isinstance(a, str) for a in answers):
            skipped["bad_record"] += 1
            continue
        image = read_image(root / r["image"]) if r.get("image") else None
        if r.get("image") and image is None:
            skipped["unreadable_image"] = skipped.get("unreadable_image", 0) + 1
            continue
        rows.append((r, answers, image))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    results = []
    for start in range(0, len(rows), batch_size):
        chunk, embeds = rows[start:start + batch_size], []
        for r, _, image in chunk:
            content = ([{"type": "image", "key": "image"}] if image is not None else []) + \
                      [{"type": "text", "text": f"{r['question']}\n{suffix}".strip()}]
            dialog = encode_dialog([{"role": "user", "content": content}], model.tokenizer, model.config)
            with torch.no_grad():
                images = model.encode_images([image]) if image is not None else []
                embeds.append(model.embed_dialog(dialog, images)[0])
        for (r, answers, _), (text, _, _) in zip(chunk, generate(model, embeds, params), strict=True):
            correct = normalize_answer(text) in {normalize_answer(a) for a in answers}
            results.append({"question": r["question"], "prediction": text, "answers": answers, "correct": correct})
    accuracy = sum(r["correct"] for r in results) / len(results) if results else float("nan")
    return {"vqa_exact_match": accuracy, "vqa_questions": len(results), "vqa_skipped": skipped,
            "vqa_predictions": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python training/eval.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (our format)")
    parser.add_argument("--captions", type=Path, help="held-out captions JSONL {image, caption}")
    parser.add_argument("--vqa", type=Path, help="JSONL {image, question, answer | answers}")
    parser.add_argument("--image-root", type=Path, help="folder of relative image paths (default: each file's)")
    parser.add_argument("--out", type=Path, help="JSON results (default: <model>/eval.json)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16, help="VQA answer length limit")
    parser.add_argument("--max-length", type=int, default=2048, help="context for the caption loss")
    parser.add_argument("--caption-prompt", default=None, help="default: the one the model was trained with")
    parser.add_argument("--vqa-suffix", default=SHORT_ANSWER, help="appended to every question")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.captions and not args.vqa:
        parser.error("give --captions and/or --vqa")
    missing = [str(p) for p in (args.captions, args.vqa) if p and not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")

    import yaml

    from model.omnifusion import OmniFusion
    from training.config import SAVED_CONFIG, TrainConfig

    model = OmniFusion.from_pretrained(args.model, device=args.device)
    prompt = args.caption_prompt
    if prompt is None:
        saved = Path(args.model) / SAVED_CONFIG
        prompt = yaml.safe_load(saved.read_text()).get("caption_prompt") if saved.is_file() else None
        prompt = TrainConfig.caption_prompt if prompt is None else prompt
    results: dict = {"model": str(args.model)}
    if args.captions:
        results |= caption_loss(model, args.captions, args.image_root, prompt, args.batch_size, args.max_length)
    if args.vqa:
        results |= vqa_accuracy(model, args.vqa, args.image_root, args.batch_size, args.max_new_tokens,
                                args.vqa_suffix)
    rows = [(k, v) for k, v in results.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    print(f"{'metric':<22}{'value':>12}")
    for key, value in rows:
        print(f"{key:<22}{value:>12.4f}" if isinstance(value, float) else f"{key:<22}{value:>12}")
    out = args.out or Path(args.model) / "eval.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

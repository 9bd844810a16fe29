"""Held-out caption loss: the training loss (mean cross-entropy per answer token, weighted by tokens over the
whole file) on captions the model did not train on, with the caption prompt it was trained with."""

from __future__ import annotations

import math
from pathlib import Path

from training.evaluation.common import EvalError, Scores


def trained_caption_prompt(model_dir: str | Path | None) -> str:
    import yaml

    from training.config import SAVED_CONFIG, TrainConfig

    saved = Path(model_dir) / SAVED_CONFIG if model_dir else None
    prompt = yaml.safe_load(saved.read_text()).get("caption_prompt") if saved and saved.is_file() else None
    return TrainConfig.caption_prompt if prompt is None else prompt


def caption_loss(model, path: Path, image_root: Path | None, caption_prompt: str, batch_size: int,
                 max_length: int) -> Scores:
    import torch

    from training.data import DialogDataset, collate
    from training.records import load_samples
    from training.trainee import Trainee

    if not Path(path).is_file():
        raise EvalError(f"--annotations: no such file {path}")
    samples, report, root = load_samples(Path(path), image_root, caption_prompt)
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
    skipped = dict(report.skipped)
    if not tokens:
        raise EvalError(f"{path}: 0 captions could be evaluated (skipped: {skipped or 'none'})")
    loss = total / tokens
    return Scores({"loss": loss, "perplexity": math.exp(loss)}, {},
                  [], {"samples": evaluated, "tokens": tokens, **{f"skipped_{k}": v for k, v in skipped.items()}})

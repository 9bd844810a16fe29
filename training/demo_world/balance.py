"""A data-dependent start for the adapter's output layer (the recipe's `balance` step, between stage 1 and
stage 2): `linear` is set to whiten the covariance of the picture-averaged adapter inputs.

Why (measured, docs/demo-model.md): a from-scratch LLM first reads a picture through attention that is nearly
uniform over its tokens, i.e. through the token average, and it learns to read an attribute at a speed set by
how much of that average's variance the attribute carries. Out of the vision stage, shape carried 70 % and
colour 28 % (patch 16; with patch 24 colour 72 % and shape 2 %), and in 300 stage-2 steps the LLM learned to
read only the larger one, most runs. Whitening the average makes every direction of it equally loud, so no
attribute starts behind. Nothing is learned here: the map comes from the pictures' statistics alone (no labels),
it only re-scales directions, and stage 2 trains `linear` on from it as usual.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from training.folders import replaced_atomically

EPS = 0.01  # regularises the smallest directions: each is amplified at most 1/sqrt(EPS) = 10x the largest's gain


def picture_inputs(model, world: Path, n: int, batch: int = 100) -> torch.Tensor:
    """[n, N, W]: what the adapter's `linear` sees for the first n pictures of the vision stage's records."""
    lines = (world / "vision.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    paths = [world / json.loads(line)["image"] for line in lines]
    out = []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            images = [Image.open(p).convert("RGB") for p in paths[i:i + batch]]
            features = model.vision(model.vision.preprocess(images)).float()
            out.append(model.adapter.transformer_layer(features))
    return torch.cat(out)


def whitening(x: torch.Tensor, linear: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) for `linear` so that the picture averages of its output have (nearly) equal variance in
    every direction, at the mean token norm the old weight gave."""
    tokens = x.reshape(-1, x.shape[-1])
    mean = tokens.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov(x.mean(1).T))
    inverse_root = vectors @ torch.diag((values.clamp(min=0) + eps * values.max()).rsqrt()) @ vectors.T
    weight = linear.float() @ inverse_root
    old_norm = (tokens @ linear.float().T).norm(dim=1).mean()
    new_norm = ((tokens - mean) @ weight.T).norm(dim=1).mean()
    weight = weight * (old_norm / new_norm)
    return weight, -weight @ mean


def balance(model_dir: Path, world: Path, out: Path, pictures: int = 1500) -> None:
    """model_dir (after stage 1) -> out, the same model with `linear` whitened."""
    from model.omnifusion import OmniFusion
    model = OmniFusion.from_pretrained(model_dir, device="cpu", dtype=torch.float32).eval()
    x = picture_inputs(model, world, pictures)
    weight, bias = whitening(x, model.adapter.linear.weight.detach())
    with torch.no_grad():
        model.adapter.linear.weight.copy_(weight)
        model.adapter.linear.bias.copy_(bias)
    with replaced_atomically(out) as tmp:  # (the recipe then records which stage-1 model it came from)
        model.save_pretrained(tmp)

"""Optimizer and learning-rate schedule. The adapter and the special vectors share `lr`; the LLM has its own,
smaller `llm_lr` (stage 2). Weight decay never touches 1-D tensors (biases, norms, SOI/EOI/USER/BOT)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers.optimization import Adafactor

from training.config import TrainConfig


def param_groups(modules: dict, cfg: TrainConfig) -> list[dict]:
    """{name: module} -> AdamW groups; the LLM at llm_lr, everything else at lr."""
    groups = []
    for part, module in modules.items():
        lr = cfg.llm_lr if part == "llm" else cfg.lr
        params = [p for p in module.parameters() if p.requires_grad]
        groups.append({"name": part, "lr": lr, "weight_decay": cfg.weight_decay,
                       "params": [p for p in params if p.ndim >= 2]})
        groups.append({"name": f"{part}_no_decay", "lr": lr, "weight_decay": 0.0,
                       "params": [p for p in params if p.ndim < 2]})
    return [g for g in groups if g["params"]]


def build_optimizer(model, parts: list[str], cfg: TrainConfig, extra: dict | None = None) -> torch.optim.Optimizer:
    """The optimizer of the model's trained `parts`, plus `extra` modules trained alongside (a trainee's
    `extras()`: the vision stage's heads, stage 2's count probe)."""
    groups = param_groups({part: getattr(model, part) for part in parts} | (extra or {}), cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    # The release's setting: a fixed, external learning rate (no relative steps or parameter scaling), so the
    # schedule below applies to Adafactor exactly as to AdamW. No first moment (beta1=None): the point of
    # Adafactor here is its tiny state.
    return Adafactor(groups, lr=cfg.lr, scale_parameter=False, relative_step=False, warmup_init=False,
                     beta1=None)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak learning rate for the optimizer step `step` (0-based)."""
    warmup = round(cfg.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / (warmup + 1)  # starts above 0: the very first step already moves the weights
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, total_steps: int, cfg: TrainConfig) -> LambdaLR:
    # Not passed to accelerator.prepare: its wrapper steps the schedule once per process per step.
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, cfg))

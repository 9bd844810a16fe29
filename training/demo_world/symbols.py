"""The demo LLM on exact pictures: how fast it learns to answer about one named object among several when the
pictures are perfect (docs/demo-model.md, "The same LLM with perfect pictures"). Measured, not a recipe step.

In place of the image vectors the LLM gets symbols: at each patch the sum of the input embeddings of its
object's colour, shape and region words (" red" + " circle" + " left"), three times the embedding of "." on the
background. With them the LLM learns the match between a question word and a patch, which stage 2 alone does
not reach in 600 steps, in a few hundred steps when the questions are all about colour and shape; with every
named form (variants.named_task: also where, whether) it is far slower:

    python -m training.demo_world.symbols --init runs/demo/vision --out runs/symbols --steps 400

The folder written is a normal checkpoint; stage 1 from it (the LLM frozen) on such questions with real
pictures then teaches the adapter to produce vectors that the LLM reads like these symbols.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.dialog import encode_dialog
from training.demo_world import variants
from training.demo_world.retrieval import patch_blocks
from training.demo_world.scenes import COLOURS, POSITIONS, SHAPES, Scene, render
from training.folders import replaced_atomically

DONE = "symbols.json"  # in the output folder, written last: what was trained and how well it answers

MIN_COVER = 0.2  # a patch belongs to the object covering the most of it, if that is at least this much


def patch_owners(scene: Scene, image_size: int, patch: int) -> np.ndarray:
    """[N]: the index of the object each patch belongs to in the model's view, -1 for the background."""
    blocks = patch_blocks(render(scene)[1], image_size, patch)
    if not scene.objects:
        return np.full(len(blocks), -1)
    cover = np.stack([(blocks == i + 1).mean(1) for i in range(len(scene.objects))], 1)
    return np.where(cover.max(1) >= MIN_COVER, cover.argmax(1), -1)


class Symbols:
    """Token ids of the words a picture is spelled with, for one tokenizer."""

    def __init__(self, tokenizer, region: bool = True):
        def first(text: str) -> int:
            return tokenizer(text, add_special_tokens=False).input_ids[0]

        self.colour = {c: first(" " + c) for c in COLOURS}
        self.shape = {s: first(" " + s) for s in SHAPES}
        self.region = {r: first(" " + r) for r in POSITIONS} if region else {}  # {}: every region spelled "."
        self.background = first(".")

    def vectors(self, table: torch.Tensor, scene: Scene, owners: np.ndarray) -> torch.Tensor:
        """[N, H]: E[colour] + E[shape] + E[region] at an object's patches (E["."] for the region of an object
        that sits between two), 3 E["."] on the background."""
        ids = []
        for o in owners:
            obj = scene.objects[o] if o >= 0 else None
            ids.append((self.colour[obj.colour], self.shape[obj.shape],
                        self.region.get(obj.region, self.background)) if obj else (self.background,) * 3)
        return table[torch.tensor(ids)].sum(1)


def named_only(forms: str = "all") -> Callable:
    """A sampler of questions about one named object among several, in either language (variants.named_task)."""
    return lambda rng: variants.named_task(rng, forms=forms)


def messages_of(sample: dict) -> list[dict]:
    out = []
    for images, question, answer in sample["turns"]:
        out.append({"role": "user", "content": [{"type": "image", "key": str(k)} for k in images]
                    + [{"type": "text", "text": question}]})
        out.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return out


def dialogs(n: int, seed: int, sampler: Callable, image_size: int, patch: int) -> list[tuple]:
    """[(sample, messages, owners per picture)]"""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        sample = sampler(rng)
        out.append((sample, messages_of(sample), [patch_owners(s, image_size, patch) for s in sample["scenes"]]))
    return out


def embedded(model, symbols: Symbols, item: tuple):
    sample, messages, owners = item
    dialog = encode_dialog(messages, model.tokenizer, model.config)
    table = model.llm.get_input_embeddings().weight
    return model.embed_dialog(dialog, [symbols.vectors(table, s, o) for s, o in zip(sample["scenes"], owners,
                                                                                     strict=True)])


def train(model, items: list[tuple], steps: int, lr: float = 1e-3, batch: int = 32, seed: int = 0,
          log: Callable[[str], None] = print, state: Path | None = None, save_every: int = 100,
          bf16: bool = False, region: bool = True) -> list[float]:
    """The LLM and the four vectors (not the tower or the adapter) on the dialogs with symbols; AdamW, warm-up
    then cosine, as stage 2 (in bf16 autocast if `bf16`: 1.8x the steps a second here, but measured, it learns the
    match slower per step: docs/demo-model.md). `state`: a file to save to every `save_every` steps and to resume
    from (the same items and seed give the same batches). -> the loss of every step."""
    symbols = Symbols(model.tokenizer, region)
    params = [p for name, p in model.named_parameters() if not name.startswith(("vision", "adapter"))]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    losses: list[float] = []
    if state is not None and state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        losses = saved["losses"]
        log(f"resumed at step {len(losses)} from {state}")
    per_epoch = len(items) // batch
    rng, order = random.Random(seed), list(range(len(items)))
    for _ in range(len(losses) // per_epoch + 1):  # the epochs' orders, replayed up to the one to go on with
        rng.shuffle(order)
    bar = tqdm(total=steps, initial=len(losses), desc="symbols", unit="step")
    start = time.perf_counter()
    while len(losses) < steps:
        i = (len(losses) % per_epoch) * batch
        pairs = [embedded(model, symbols, items[j]) for j in order[i:i + batch]]
        padded = model.pad_batch([e for e, _ in pairs], [label for _, label in pairs], left=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**padded).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if len(losses) % 50 == 0:
            log(f"step {len(losses)} loss {losses[-1]:.3f} ({time.perf_counter() - start:.0f} s)")
        if state is not None and len(losses) % save_every == 0 and len(losses) < steps:
            tmp = state.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "losses": losses}, tmp)
            tmp.replace(state)
        if len(losses) % per_epoch == 0:
            rng.shuffle(order)
    bar.close()
    return losses


def answers_right(model, items: list[tuple], region: bool = True) -> float:
    """Teacher-forced: the share of dialogs whose every answer token is the model's first choice."""
    symbols, right = Symbols(model.tokenizer, region), 0
    with torch.no_grad():
        for item in items:
            embeds, labels = embedded(model, symbols, item)
            guess = model(inputs_embeds=embeds[None]).logits[0, :-1].argmax(-1)
            target = labels[1:]
            trained = target != -100
            right += int((guess[trained] == target[trained]).all())
    return right / len(items)


def run(init: Path, out: Path, steps: int = 400, lr: float = 1e-3, seed: int = 0, forms: str = "all",
        region: bool = True, bf16: bool = False, log: Callable[[str], None] = print) -> dict:
    """`init`'s model, its LLM trained on symbols (`forms`: named_only's), written to `out` (an interrupted run
    resumes from `<out>/state.pt`, which the finished folder replaces). -> what it wrote to <out>/symbols.json,
    with the held-out share right per kind of question."""
    from model.omnifusion import OmniFusion

    torch.manual_seed(seed)
    model = OmniFusion.from_pretrained(init, device="cpu", dtype=torch.float32)
    size, patch = model.config.vision_image_size, model.config.vision_patch_size
    items = dialogs(steps * 32 // 2, seed + 7, named_only(forms), size, patch)  # two epochs
    out.mkdir(parents=True, exist_ok=True)
    state = out / "state.pt"
    losses = train(model, items, steps, lr, seed=seed, log=log, state=state, bf16=bf16, region=region)
    kinds: dict[str, list] = {}
    for item in dialogs(400, seed + 1007, named_only("all"), size, patch):
        kinds.setdefault(item[0]["expect"]["kind"], []).append(item)
    right = {kind: round(answers_right(model, group, region), 3) for kind, group in sorted(kinds.items())}
    report = {"steps": steps, "lr": lr, "seed": seed, "forms": forms, "region": region, "bf16": bf16,
              "first_loss": losses[0], "last_loss": losses[-1], "held_out_right": right}
    log(f"held out, every answer token right: {right}")
    with replaced_atomically(out) as tmp:
        model.save_pretrained(tmp)
        (tmp / DONE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo_world.symbols", description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", required=True, help="a demo-preset model (e.g. runs/demo/vision)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--forms", choices=("all", "colour-shape"), default="all",
                        help="every named question form, or the colour of a named shape and the shape of a named colour")
    parser.add_argument("--no-region", action="store_true", help="spell no region at the patches")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (faster, learns slower per step)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run(Path(args.init), Path(args.out), args.steps, args.lr, args.seed, args.forms, not args.no_region, args.bf16)
    return 0


if __name__ == "__main__":
    sys.exit(main())

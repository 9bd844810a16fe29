"""The demo LLM on exact pictures: an experiment towards a retrieval stage (docs/demo-model.md, "The same LLM
with perfect pictures"). Not a step of the recipe yet.

In place of the image vectors the LLM gets symbols: at each patch the sum of the input embeddings of its
object's colour and shape words (" red" + " circle"), twice the embedding of "." on the background. With them the
LLM learns to answer questions about one named object among several (the match between a question word and a
patch that stage 2 does not reach in 600 steps) in a few hundred steps when the dialogs are all such questions:

    python -m training.demo_world.symbols --init runs/demo/vision --out runs/symbols --steps 400 --named

A model written here is a normal checkpoint; `training/run.py` stage 1 from it (the LLM frozen) on such
dialogs with real pictures then teaches the adapter to produce vectors the LLM reads like these symbols.
"""

from __future__ import annotations

import argparse
import inspect
import math
import random
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from model.dialog import encode_dialog
from training.demo_world import tasks
from training.demo_world.retrieval import patch_blocks
from training.demo_world.scenes import COLOURS, SHAPES, Scene, render

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

    def __init__(self, tokenizer):
        def first(text: str) -> int:
            return tokenizer(text, add_special_tokens=False).input_ids[0]

        self.colour = {c: first(" " + c) for c in COLOURS}
        self.shape = {s: first(" " + s) for s in SHAPES}
        self.background = first(".")

    def vectors(self, table: torch.Tensor, scene: Scene, owners: np.ndarray) -> torch.Tensor:
        """[N, H]: E[colour word] + E[shape word] at an object's patches, 2 E["."] on the background."""
        colour = [self.colour[scene.objects[o].colour] if o >= 0 else self.background for o in owners]
        shape = [self.shape[scene.objects[o].shape] if o >= 0 else self.background for o in owners]
        return table[torch.tensor(colour)] + table[torch.tensor(shape)]


def named_only() -> Callable:
    """A sampler of colour and shape questions about one named object among several (no single shapes)."""
    source = inspect.getsource(tasks._attribute_task).replace("rng.random() < 0.6", "False")
    scope = dict(vars(tasks))
    exec(source, scope)  # the task's own code, with the one-shape branch switched off

    def sample(rng: random.Random) -> dict:
        asked, named = rng.choice((("colour", "shape"), ("shape", "colour")))
        return scope["_attribute_task"](rng, rng.choice(("en", "ru")), asked, named)

    return sample


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
          log: Callable[[str], None] = print) -> list[float]:
    """The LLM and the four vectors (not the tower or the adapter) on the dialogs with symbols; AdamW, warm-up
    then cosine, as stage 2. -> the loss of every step."""
    symbols = Symbols(model.tokenizer)
    params = [p for name, p in model.named_parameters() if not name.startswith(("vision", "adapter"))]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    order, losses, start = list(range(len(items))), [], time.perf_counter()
    rng = random.Random(seed)
    while len(losses) < steps:
        rng.shuffle(order)
        for i in range(0, len(order) - batch + 1, batch):
            pairs = [embedded(model, symbols, items[j]) for j in order[i:i + batch]]
            padded = model.pad_batch([e for e, _ in pairs], [label for _, label in pairs], left=False)
            loss = model(**padded).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if len(losses) % 50 == 0:
                log(f"step {len(losses)} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
            if len(losses) >= steps:
                break
    return losses


def answers_right(model, items: list[tuple]) -> float:
    """Teacher-forced: the share of dialogs whose every answer token is the model's first choice."""
    symbols, right = Symbols(model.tokenizer), 0
    with torch.no_grad():
        for item in items:
            embeds, labels = embedded(model, symbols, item)
            guess = model(inputs_embeds=embeds[None]).logits[0, :-1].argmax(-1)
            target = labels[1:]
            trained = target != -100
            right += int((guess[trained] == target[trained]).all())
    return right / len(items)


def main(argv: list[str] | None = None) -> int:
    from model.omnifusion import OmniFusion

    parser = argparse.ArgumentParser(prog="python -m training.demo_world.symbols", description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", required=True, help="a demo-preset model (e.g. runs/demo/vision)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--named", action="store_true", help="only questions about a named object among several "
                        "(else the whole stage-2 mix)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = OmniFusion.from_pretrained(args.init, device="cpu", dtype=torch.float32)
    size, patch = model.config.vision_image_size, model.config.vision_patch_size
    sampler = named_only() if args.named else (lambda rng: tasks.sample_task(rng))
    items = dialogs(args.steps * 32 // 2, args.seed, sampler, size, patch)  # two epochs
    held_out = dialogs(200, args.seed + 1000, named_only(), size, patch)
    train(model, items, args.steps, args.lr)
    print(f"named colour and shape questions, held out, every answer token right: {answers_right(model, held_out):.2f}")
    model.save_pretrained(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the demo model fails and why: questions about one named object among several.

`python -m training.demo_world.retrieval [--model DIR]` measures three things on pictures it draws itself
(2-4 objects, one shape occurring once; "What colour is the <shape>?"):

    probe      can ONE attention layer with a learned query per shape read that shape's colour from the image
               vectors the LLM gets (the adapter's output)? Trained here, scored on held-out pictures; the
               same with the vectors of another picture is the control (chance). If it can, the picture
               holds the answer in a retrievable form and what is missing is the LLM's own retrieval.
    residual   is the named shape in the LLM's residual stream at the position that says the colour, layer by
               layer (a linear probe)? If it is, the question reached the answer position.
    attention  where each head of each layer looks, at that position, among the picture's tokens: its share on
               the named object's patches and on the other objects', against their share of the area. A head
               that retrieves puts far more on the named object than on the others; one that only finds
               objects splits its attention between them in proportion to their area.

docs/demo-model.md ("Where retrieval fails") has the numbers of the committed model; tests/test_demo_eval.py
checks the probe and the attention against pictures that do not reach the model.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.dialog import encode_dialog
from model.vision import clip_geometry
from training.demo_world import language as L
from training.demo_world.scenes import COLOUR_NAMES, SHAPES, random_scene, render


@dataclass
class Case:
    image: Image.Image
    shape: str  # the named shape: it occurs once in the picture
    colour: str  # its colour: the right answer
    target: np.ndarray  # [N] the named object's share of each patch
    others: np.ndarray  # [N] the other objects' share of each patch


def patch_blocks(mask: Image.Image, image_size: int, patch: int) -> np.ndarray:
    """Instance mask -> [N, patch * patch]: each patch's mask values (object index + 1, 0 for the background),
    in the model's view (resized and cropped as the pixels are: vision_stage.VisionTargets.for_image)."""
    size, box = clip_geometry(*mask.size, image_size)
    m = np.asarray(mask.resize(size, Image.Resampling.NEAREST).crop(box))
    grid = image_size // patch
    return m.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, patch * patch)


def _patch_shares(mask: Image.Image, image_size: int, patch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (the object `index`'s share of each patch, the other objects' share)."""
    blocks = patch_blocks(mask, image_size, patch)
    return (blocks == index + 1).mean(1), ((blocks > 0) & (blocks != index + 1)).mean(1)


def named_object_cases(n: int, seed: int, image_size: int, patch: int) -> list[Case]:
    rng, cases = random.Random(seed), []
    while len(cases) < n:
        scene = random_scene(rng, n=rng.randint(2, 4))
        counts = Counter(o.shape for o in scene.objects)
        once = [i for i, o in enumerate(scene.objects) if counts[o.shape] == 1]
        if not once:
            continue
        i = rng.choice(once)
        image, mask = render(scene)
        target, others = _patch_shares(mask, image_size, patch, i)
        cases.append(Case(image, scene.objects[i].shape, scene.objects[i].colour, target, others))
    return cases


def image_vectors(model, cases: list[Case], batch: int = 200) -> torch.Tensor:
    """[n, N, H] float32: what the LLM gets for each picture."""
    with torch.no_grad():
        return torch.cat([model.encode_images([c.image for c in cases[i:i + batch]]).float()
                          for i in range(0, len(cases), batch)])


class _Readout(nn.Module):
    """One attention layer: a learned query per shape over the picture's vectors, then the colour."""

    def __init__(self, width: int, heads: int = 4):
        super().__init__()
        self.norm, self.query = nn.LayerNorm(width), nn.Embedding(len(SHAPES), width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.out = nn.Linear(width, len(COLOUR_NAMES))

    def forward(self, vectors: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        x = self.norm(vectors)
        h, _ = self.attention(self.query(shape)[:, None], x, x)
        return self.out(h[:, 0])


def probe(vectors: torch.Tensor, cases: list[Case], train: int, steps: int = 300, seed: int = 0) -> float:
    """Held-out accuracy of a one-layer attention readout trained on the first `train` cases."""
    shapes = torch.tensor([SHAPES.index(c.shape) for c in cases])
    colours = torch.tensor([COLOUR_NAMES.index(c.colour) for c in cases])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    readout = _Readout(vectors.shape[-1])
    optimizer = torch.optim.Adam(readout.parameters(), 1e-3)
    for _ in range(steps):
        idx = torch.randint(0, train, (128,), generator=generator)
        loss = nn.functional.cross_entropy(readout(vectors[idx], shapes[idx]), colours[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        guess = readout(vectors[train:], shapes[train:]).argmax(-1)
    return (guess == colours[train:]).float().mean().item()


def _answer_position(model, case: Case):
    """(inputs_embeds [T, H], the position whose next token is the colour, the first image token)."""
    question = f"What colour is the {case.shape}?"
    messages = [{"role": "user", "content": [{"type": "image", "key": "0"}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text",
                                                   "text": L.colour_answer(case.colour, "en", shape=case.shape)}]}]
    dialog = encode_dialog(messages, model.tokenizer, model.config)
    with torch.no_grad():
        embeds, labels = model.embed_dialog(dialog, [model.encode_images([case.image])[0]])
    colour_id = model.tokenizer(" " + case.colour, add_special_tokens=False).input_ids[0]
    labels = labels.tolist()
    position = next(t for t, label in enumerate(labels) if label == colour_id) - 1
    return embeds, position, dialog.image_positions()[0], colour_id


def look(model, cases: list[Case]) -> dict:
    """Per layer and head, at the position that says the colour: the attention share (of what goes to the
    picture) on the named object and on the other objects; their area shares; how often the colour is the
    model's first choice there; and the hidden states at that position (for `residual`)."""
    model.llm.set_attn_implementation("eager")  # the only implementation that returns attention weights
    on_target, on_others, right, hidden = [], [], 0, []
    for case in cases:
        embeds, pos, start, colour_id = _answer_position(model, case)
        n = len(case.target)
        with torch.no_grad():
            out = model.llm(inputs_embeds=embeds[None], output_attentions=True, output_hidden_states=True)
        right += int(out.logits[0, pos].argmax().item() == colour_id)
        hidden.append(torch.stack([h[0, pos].float() for h in out.hidden_states]))
        target, others = torch.from_numpy(case.target).float(), torch.from_numpy(case.others).float()
        picture = [a[0, :, pos, start:start + n].float() for a in out.attentions]  # layers x [heads, N]
        shares = [p / p.sum(-1, keepdim=True) for p in picture]
        on_target.append(torch.stack([s @ target for s in shares]))
        on_others.append(torch.stack([s @ others for s in shares]))
    return {"on_target": torch.stack(on_target).mean(0), "on_others": torch.stack(on_others).mean(0),
            "area_target": float(np.mean([c.target.mean() for c in cases])),
            "area_others": float(np.mean([c.others.mean() for c in cases])),
            "colour_first": right / len(cases), "hidden": torch.stack(hidden)}


def linear_probe(x: torch.Tensor, labels: torch.Tensor, train: int, classes: int, steps: int = 300) -> float:
    """Held-out accuracy of a linear probe (standardised inputs, a little L2) trained on the first `train` rows."""
    x = (x - x[:train].mean(0)) / (x[:train].std(0) + 1e-5)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    optimizer = torch.optim.Adam([w], 1e-2)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(x[:train] @ w, labels[:train]) + 1e-3 * (w ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((x[train:] @ w).argmax(-1) == labels[train:]).float().mean().item()


def residual(hidden: torch.Tensor, cases: list[Case], train: int, steps: int = 300) -> list[float]:
    """Per layer (0 = the input embeddings): held-out accuracy of a linear probe for the named shape."""
    shapes = torch.tensor([SHAPES.index(c.shape) for c in cases])
    return [linear_probe(hidden[:, layer], shapes, train, len(SHAPES), steps) for layer in range(hidden.shape[1])]


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import PACKAGED
    from model.omnifusion import OmniFusion

    parser = argparse.ArgumentParser(prog="python -m training.demo_world.retrieval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PACKAGED["demo"]), help="a demo-preset model folder")
    parser.add_argument("--pictures", type=int, default=3000, help="for the probe (a sixth held out)")
    parser.add_argument("--looks", type=int, default=500, help="for residual and attention (a fifth held out)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    model = OmniFusion.from_pretrained(args.model, device="cpu", dtype=torch.float32)
    size, patch = model.config.vision_image_size, model.config.vision_patch_size
    cases = named_object_cases(args.pictures, args.seed, size, patch)
    vectors = image_vectors(model, cases)
    train = args.pictures * 5 // 6
    print(f"probe: one attention layer reads the named shape's colour from the image vectors: "
          f"{probe(vectors, cases, train):.2f} held out; from another picture's vectors: "
          f"{probe(vectors.roll(1, 0), cases, train):.2f} (chance {1 / len(COLOUR_NAMES):.2f})")
    seen = look(model, cases[:args.looks])
    print(f"the model's first choice at the colour: right {seen['colour_first']:.2f}")
    layers = residual(seen["hidden"], cases[:args.looks], args.looks * 4 // 5)
    print("residual: the named shape at that position, per layer (0 = embeddings): "
          + " ".join(f"{a:.2f}" for a in layers))
    print(f"attention there, per head, share on the named object / on the other objects "
          f"(area: {seen['area_target']:.3f} / {seen['area_others']:.3f}):")
    for layer, (t, o) in enumerate(zip(seen["on_target"], seen["on_others"], strict=True)):
        print(f"  layer {layer}: " + "  ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(t.tolist(), o.tolist(), strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

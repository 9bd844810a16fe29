"""Where the demo model loses a named count: "How many red shapes are there?".

`python -m training.demo_world.count_readout [--model DIR] [--n 1500]` asks the model questions drawn as the
recipe's count task draws them, each naming a colour, and measures along the way from the picture to the answer
how well a linear probe (trained on 70 % of them, scored on the rest) reads the count there:

    tower         the mean of the vision tower's patch features over the named objects' patches (the patches
                  stage 2's focus loss points at; zeros when none is there): what a head looking exactly at
                  them could read, before the adapter
    adapter       the same mean over the adapter's outputs, the LLM's image vectors
    head L:h      the output of head h of LLM layer L at BOT, before o_proj (head 0 of both layers is focused
                  on the named objects, a tally head on their centres and SOI: training/configs/demo/stage2.yaml)
    residual L    the residual stream at BOT after layer L
    answers       the model's own greedy answers, scored as the eval scores them (no probe)

The stage where the accuracy falls is where the count is lost. docs/demo-model.md ("Counting what is named") has
the numbers of the committed model; tests/test_demo_recipe.py checks the probe against another picture's vectors.
"""

from __future__ import annotations

import argparse
import random
import sys

import torch

from model.dialog import encode_dialog
from model.serving.engine import SamplingParams, generate
from training.demo_world import scoring
from training.demo_world.focus import turn_focus
from training.demo_world.retrieval import linear_probe
from training.demo_world.scenes import Scene, render
from training.demo_world.tasks import count_task
from training.trainee import CountProbe, focus_cells


def cases(n: int, seed: int) -> list[tuple[Scene, str, int]]:
    """-> (scene, question, count) of `n` count questions that name a colour, both languages."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        sample = count_task(rng, rng.choice(("en", "ru")))
        _, question, _ = sample["turns"][0]
        if scoring.colours(question):
            out.append((sample["scenes"][0], question, sample["expect"]["value"]))
    return out


def readings(model, items: list[tuple[Scene, str, int]], answer: bool = True) -> tuple[dict, list[str]]:
    """-> ({stage: [n, width] float32}, the model's greedy answers, or [] without `answer`)."""
    layers = model.llm.get_decoder().layers
    head = model.llm.config.hidden_size // model.llm.config.num_attention_heads
    seen: dict[str, torch.Tensor] = {}
    heads = model.llm.config.num_attention_heads

    def keep(_module, args, i):
        for h in range(heads):
            seen[f"head {i}:{h}"] = args[0][0, -1, h * head:(h + 1) * head].float()

    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a, i=i: keep(m, a, i))
             for i, layer in enumerate(layers)]
    found: dict[str, list[torch.Tensor]] = {}
    embeds = []
    try:
        with torch.no_grad():
            for scene, question, _ in items:
                tower = model.vision(model.vision.preprocess([render(scene)[0]]).to(model.device))[0]  # [N, W]
                vectors = model.adapter(tower[None].to(next(model.adapter.parameters()).dtype))  # [1, N, H]
                grid = round(tower.shape[0] ** 0.5)
                named = turn_focus(question, [scene], [0])[0]["objects"]
                cells = focus_cells(named, grid)
                messages = [{"role": "user", "content": [{"type": "image", "key": "0"},
                                                         {"type": "text", "text": question}]}]
                embed, _ = model.embed_dialog(encode_dialog(messages, model.tokenizer, model.config),
                                              vectors.to(model.dtype))
                embeds.append(embed)
                out = model.llm(inputs_embeds=embed[None], output_hidden_states=True)  # the prompt ends with BOT
                row = {"tower": tower[cells].mean(0) if cells else torch.zeros(tower.shape[1]),
                       "adapter": vectors[0, cells].mean(0) if cells else torch.zeros(vectors.shape[-1]),
                       **seen}
                row |= {f"residual {i}": h[0, -1] for i, h in enumerate(out.hidden_states[1:])}
                for k, v in row.items():
                    found.setdefault(k, []).append(v.float().cpu())
    finally:
        for h in hooks:
            h.remove()
    answers = []
    if answer:
        params = SamplingParams(max_new_tokens=24, temperature=0.0)
        for i in range(0, len(embeds), 64):
            answers += [text for text, _, _ in generate(model, embeds[i:i + 64], params)]
    return {k: torch.stack(v) for k, v in found.items()}, answers


def count_probe(x: torch.Tensor, counts: torch.Tensor, steps: int = 600) -> float:
    """Held-out accuracy of a linear probe of the count (0 .. CountProbe.LARGEST) trained on 70 % of the rows."""
    return linear_probe(x, counts, int(0.7 * len(x)), CountProbe.LARGEST + 1, steps)


def measure(model, n: int = 1500, seed: int = 7) -> dict[str, float]:
    """-> {stage: held-out accuracy}, in the order of the way from the picture to the answer."""
    items = cases(n, seed)
    found, answers = readings(model, items)
    counts = torch.tensor([min(c, CountProbe.LARGEST) for _, _, c in items])
    result = {k: count_probe(v, counts) for k, v in found.items()}
    result["answers"] = sum(scoring.is_right(a, {"kind": "count", "value": c})
                            for a, (_, _, c) in zip(answers, items, strict=True)) / len(items)
    return result


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import PACKAGED
    from model.omnifusion import OmniFusion

    parser = argparse.ArgumentParser(prog="python -m training.demo_world.count_readout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PACKAGED["demo"]))
    parser.add_argument("--n", type=int, default=1500, help="questions (70 %% train the probes)")
    args = parser.parse_args(argv)
    model = OmniFusion.from_pretrained(args.model, device="cpu", dtype=torch.float32).eval()
    for stage, accuracy in measure(model, args.n).items():
        print(f"{stage:12s} {accuracy:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

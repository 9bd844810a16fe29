"""Stage-1 training throughput: CLIP features from the cache vs CLIP run on every step.

Real vision geometry (ViT-L/14-336: 24 layers of width 1024, 576 patches; random weights, no download) with
the tiny LLM, so the step is CLIP + adapter and little else: the ratio shows what the cache removes, not what
it gains at 7B, where the frozen LLM's forward and backward (~18 TFLOP per sample) dwarf CLIP (~0.37 TFLOP).
Both runs go through the real training loop (training.loop.train) with the stage-1 preset; the samples/s
are its steady-state figures (the first step, which pays for warm-up, is left out).

    python bench/train_throughput.py [--steps-cached 6] [--steps-uncached 2] [--batch 2] [--images 2]

A few images are enough (each epoch reshuffles them): what is measured is the cost per sample, and on a
2-core CPU one ViT-L/14-336 forward takes ~10 s, so every image in the cache costs that once.

The ratio is printed last.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.checkpoint import build_in_memory  # noqa: E402
from model.config import preset_config  # noqa: E402
from training.config import parse_args  # noqa: E402
from training.loop import train  # noqa: E402

REAL_VISION = dict(vision_model="ViT-L-14-336-quickgelu", vision_image_size=336, vision_patch_size=14,
                   vision_width=1024, vision_layers=24, vision_heads=16, vision_quick_gelu=True, adapter_ff=2048)


def make_data(root: Path, count: int) -> Path:
    colours = ["red", "green", "blue", "yellow", "black", "orange", "purple", "grey"]
    lines = []
    for i in range(count):
        colour = colours[i % len(colours)]
        image = Image.new("RGB", (400, 300), "white")
        ImageDraw.Draw(image).ellipse([50 + i, 40, 300, 260 - i], fill=colour)
        image.save(root / f"{i}.jpg")
        lines.append(json.dumps({"image": f"{i}.jpg", "caption": f"A {colour} ellipse on white."}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root / "captions.jsonl"


def run(model, data: Path, out: Path, steps: int, batch: int, cache: Path | None) -> float:
    args = ["--config", str(Path(__file__).resolve().parent.parent / "training/configs/stage1.yaml"),
            "--data", str(data), "--output_dir", str(out), "--batch_size", str(batch), "--micro_batch_size",
            str(batch), "--max_steps", str(steps), "--num_workers", "0", "--feature_cache", str(cache or "none"),
            "--save_every", "100000", "--log_every", "1"]
    return train(parse_args(args), model=model).samples_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-cached", type=int, default=6)
    parser.add_argument("--steps-uncached", type=int, default=2, help="the first step is not measured")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=2, help="distinct images (>= batch)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    cfg = preset_config("tiny").replace(**REAL_VISION)
    started = time.perf_counter()
    model = build_in_memory(cfg, device="cpu", dtype=torch.float32)  # train() moves it to CUDA if there is one
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    vision_params = sum(p.numel() for p in model.vision.parameters())
    print(f"model: ViT-L/14-336 geometry ({vision_params / 1e6:.0f}M vision parameters, {cfg.vision_num_patches} "
          f"patches) + tiny LLM; built in {time.perf_counter() - started:.0f} s; {device}")
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        images = max(args.images, args.batch)
        data = make_data(tmp / "data", images)

        uncached = run(model, data, tmp / "uncached", args.steps_uncached, args.batch, None)
        print(f"CLIP every step:  {uncached:7.3f} samples/s")

        started = time.perf_counter()
        from training.distributed import make_accelerator
        from training.feature_store import fill_cache  # the one-off cost, timed on its own

        fill_cache(tmp / "cache", [f"{i}.jpg" for i in range(images)], tmp / "data", model,
                   make_accelerator(parse_args(["--data", str(data)])), batch_size=args.batch)
        fill_s = time.perf_counter() - started
        print(f"feature cache:    {images / fill_s:7.3f} images/s to fill once "
              f"({images} images, {fill_s:.0f} s; fp16, {cfg.vision_num_patches * cfg.vision_width * 2 / 2**20:.2f}"
              " MiB per image)")
        cached = run(model, data, tmp / "cached", args.steps_cached, args.batch, tmp / "cache")
        print(f"cached features:  {cached:7.3f} samples/s")
    print(f"stage-1 samples/s, cached CLIP features vs CLIP every step: {cached / uncached:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()

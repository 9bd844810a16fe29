"""The demo model's whole recipe: `make demo-model` (python -m training.demo_world.recipe).

    world      draw the pictures and write every stage's data (build.py)
    init       a tokenizer trained on the world's text (both languages), a random OmniFusion of the `demo`
               preset around it
    vision     the vision tower learns to see (instance masks)         training/configs/demo/vision.yaml
    stage1     adapter + SOI/EOI/USER/BOT on captions, as released     training/configs/demo/stage1.yaml
    balance    the adapter's output layer is whitened on the pictures' statistics (balance.py says why)
    stage2     everything but the tower on every skill, as released    training/configs/demo/stage2.yaml
    eval       per-skill accuracy on held-out dialogs -> <out>/eval.json

Every training step is `python training/run.py --config ...`. Run it again and finished steps are reused, an
interrupted one resumes from its last checkpoint (`--resume latest`); a step whose input model changed since (an
earlier step run again) or whose settings did (its config file edited, another seed) is run again, from the start;
the same seed gives the same files.
`--export DIR` copies the final model there (the committed one is model/checkpoints/demo).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training.demo_world.build import SHORT, WorldSizes, build, is_built  # noqa: E402
from training.folders import replaced_atomically  # noqa: E402

CONFIGS = ROOT / "training" / "configs" / "demo"
# No text stage for the LLM (training/configs/demo/text.yaml, still runnable): measured on this world, an LLM
# first trained on text alone, then stage 1, then stage 2 answered every skill at chance: it never learned to
# read the image tokens. Stage 2 from a random LLM does learn to see (docs/demo-model.md).
# No symbols step (symbols.py, still runnable): measured, the LLM on exact pictures learns the named-object match
# in a few hundred steps only when the questions are about colour and shape alone; with every named question form
# it had not by 800 steps, and the recipe with it before stage 1 answered worse (docs/demo-model.md).
STAGES = ("vision", "stage1", "balance", "stage2")
DATA = {"vision": "vision.jsonl", "text": "text.jsonl", "stage1": "stage1.json", "stage2": "stage2.json"}
# The short recipe (CI): fewer pictures and steps; it must still learn to see colour (tests/test_demo_recipe.py:
# 79 % on pictures drawn by matplotlib after 160 stage-2 steps, 100 % after 220).
SHORT_STEPS = {"vision": ["--max_steps", "250"], "stage1": ["--max_steps", "20"], "stage2": ["--max_steps", "220"]}
# `--scale N`: N times the training data, and so N times every training step's steps at the same epochs (the
# vision stage counts steps, not epochs: N times its max_steps). For a machine with a GPU: measured here, stage 2
# gains with steps and has not stopped at 1,200 (docs/demo-model.md). The held-out sets and the tokenizer's text
# stay as they are, so the accuracy of a scaled run compares with the recipe's.
SCALED = ("vision", "stage1", "stage2")
MODEL_FILES = ("config.json", "adapter.safetensors", "vision.safetensors", "llm")
TOKENIZER_VOCAB = 1024
INPUT = "recipe_input.json"  # in each step's folder: the digest of the model it started from


def model_digest(model_dir: Path) -> str:
    """sha256 over a model folder's files (config, weights, tokenizer): what a step's result depends on."""
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = model_dir / name
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                digest.update(f.relative_to(model_dir).as_posix().encode())
                with f.open("rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def step_digest(stage: str, previous: Path, seed: int, short: bool, scale: int, world: Path | None = None) -> str:
    """What a step's result depends on: the model it starts from, its settings (its config's values, what the
    recipe adds to them, the seed) and, with `world`, its own data there (the file's bytes and the generator's
    VERSION, which draws its pictures). A step whose config values or data changed since is run again, not
    reused; an edited comment changes nothing, nor do more dialogs for stage 2 to a step before it."""
    import yaml

    digest = hashlib.sha256(model_digest(previous).encode())
    config = CONFIGS / f"{stage}.yaml"
    settings = {"config": yaml.safe_load(config.read_text()) if config.is_file() else None, "seed": seed,
                "extra": stage_steps(stage, short, scale) if stage in DATA else [],
                "balance_pictures": balance_pictures(short) if stage == "balance" else None}
    if world is not None and stage in DATA:
        with (world / DATA[stage]).open("rb") as f:
            settings["data"] = hashlib.file_digest(f, "sha256").hexdigest()
        settings["world"] = json.loads((world / "manifest.json").read_text())["version"]
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def balance_pictures(short: bool) -> int:
    return 600 if short else 1500


def started_from(source: Path, folder: Path, digest: str | None = None) -> bool:
    """The step's folder was started from this very input (`digest`, by default the model_digest of `source`):
    an earlier step run again makes it stale."""
    record = folder / INPUT
    return record.is_file() and json.loads(record.read_text()).get("sha256") == (digest or model_digest(source))


def record(source: Path, folder: Path, digest: str | None = None) -> None:
    """The step's folder says which input it starts from."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INPUT).write_text(json.dumps({"from": str(source), "sha256": digest or model_digest(source)}) + "\n")


def begin(source: Path, folder: Path, digest: str | None = None) -> None:
    """Before a step runs: a folder started from another input is removed (nothing in it can be resumed)."""
    digest = digest or model_digest(source)
    if folder.exists() and not started_from(source, folder, digest):
        shutil.rmtree(folder)
    record(source, folder, digest)


def make_init(world: Path, out: Path, seed: int) -> None:
    """A random `demo` model around a tokenizer trained on the world's text."""
    from model.checkpoint import build_in_memory
    from model.config import preset_config
    from model.tokenizer import train_bpe_tokenizer

    lines = [json.loads(line)["text"] for line in (world / DATA["text"]).read_text(encoding="utf-8").splitlines()]
    tokenizer = train_bpe_tokenizer(lines, TOKENIZER_VOCAB)
    model = build_in_memory(preset_config("demo").replace(seed=seed), device="cpu", tokenizer=tokenizer)
    with replaced_atomically(out) as tmp:
        model.save_pretrained(tmp)


def finished(stage: str, folder: Path) -> bool:
    """A step's folder holds its final model (training/run.py writes it into the folder itself, last)."""
    if stage == "balance":
        return (folder / "config.json").is_file()
    progress = folder / "progress.json"
    if not (folder / "training_state.pt").is_file() or not progress.is_file():
        return False
    saved = json.loads(progress.read_text())
    return saved.get("step", 0) > 0 and (folder / "config.json").is_file()


def scaled(sizes: WorldSizes, scale: int) -> WorldSizes:
    return dataclasses.replace(sizes, **{name: getattr(sizes, name) * scale for name in SCALED})


def stage_steps(stage: str, short: bool, scale: int) -> list[str]:
    """What the recipe adds to a stage's own config."""
    if short:
        return SHORT_STEPS.get(stage, [])
    if scale > 1 and stage == "vision":
        import yaml

        return ["--max_steps", str(yaml.safe_load((CONFIGS / "vision.yaml").read_text())["max_steps"] * scale)]
    return []


def run_stage(stage: str, previous: Path, world: Path, out: Path, seed: int, short: bool, scale: int = 1) -> None:
    argv = [sys.executable, str(ROOT / "training" / "run.py"), "--config", str(CONFIGS / f"{stage}.yaml"),
            "--init_from", str(previous), "--data", str(world / DATA[stage]), "--output_dir", str(out / stage),
            "--resume", "latest", "--seed", str(seed)]
    if stage in ("stage1", "stage2"):
        argv += ["--feature_cache", str(out / "features")]
    argv += stage_steps(stage, short, scale)
    subprocess.run(argv, check=True, cwd=ROOT)


def evaluate_final(model_dir: Path, world: Path, out: Path) -> dict:
    import torch

    from model.omnifusion import OmniFusion
    from training.demo_world.evaluate import evaluate

    model = OmniFusion.from_pretrained(model_dir, device="cpu", dtype=torch.float32)
    result = evaluate(model, world)
    (out / "eval.json").write_text(json.dumps(result["report"], indent=2) + "\n")
    with (out / "eval_answers.jsonl").open("w", encoding="utf-8") as f:
        for item in result["items"]:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return result["report"]


def export(model_dir: Path, dest: Path) -> None:
    """Only what serving needs: the model files, not the optimizer state."""
    with replaced_atomically(dest) as tmp:
        for name in MODEL_FILES:
            src = model_dir / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo_world.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="working folder (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--short", action="store_true", help="the few-minute version CI runs")
    parser.add_argument("--scale", type=int, default=1, metavar="N",
                        help="N times the training data and steps (for a GPU; the held-out sets stay the same)")
    parser.add_argument("--export", help="copy the final model to this folder (e.g. model/checkpoints/demo)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    args = parser.parse_args(argv)
    if args.scale < 1 or (args.short and args.scale != 1):
        parser.error("--scale takes a whole number >= 1, and not with --short")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The seconds each step of the current outputs took to make: a step reused keeps the time it took when it
    # ran, so a rerun that reuses everything still says what the model cost (this run's own seconds: `ran`).
    timings_file, ran = out / "timings.json", {}
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    def timed(name, fn, *a):
        start = time.perf_counter()
        result = fn(*a)
        timings[name] = ran[name] = round(time.perf_counter() - start, 1)
        print(f"[recipe] {name}: {timings[name]:.0f} s", flush=True)
        return result

    sizes = WorldSizes(**{**SHORT.__dict__, "seed": args.seed}) if args.short else WorldSizes(seed=args.seed)
    sizes = scaled(sizes, args.scale)
    world = out / "world"
    # the item seed alone decides each picture: any number of processes draws the same files; the cores this
    # process may run on, not the host's (a container or a lent machine may see many more than it gets)
    if is_built(world, sizes):
        print("[recipe] world: drawn before, reused", flush=True)
    else:
        timed("world", build, world, sizes, min(len(os.sched_getaffinity(0)), 16))
    init, drawn = out / "init", hashlib.sha256((world / "manifest.json").read_bytes()).hexdigest()
    if (init / "config.json").is_file() and started_from(world, init, drawn):
        print("[recipe] init: done before, reused", flush=True)
    else:  # (again) when the world was drawn anew: the tokenizer is trained on its text
        timed("init", make_init, world, init, args.seed)
        record(world, init, drawn)
    previous = init
    for stage in STAGES:
        folder, digest = out / stage, step_digest(stage, previous, args.seed, args.short, args.scale, world)
        if finished(stage, folder) and started_from(previous, folder, digest):
            print(f"[recipe] {stage}: done before, reused", flush=True)
        else:
            if finished(stage, folder):
                print(f"[recipe] {stage}: done before from another {previous.name} or other settings, run again",
                      flush=True)
            begin(previous, folder, digest)
            if stage == "balance":  # not a training step: a start for stage 2's adapter, from the pictures alone
                from training.demo_world.balance import balance

                timed(stage, balance, previous, world, folder, balance_pictures(args.short))
            else:
                timed(stage, run_stage, stage, previous, world, out, args.seed, args.short, args.scale)
            record(previous, folder, digest)  # again: a step may write its folder anew (balance does)
        previous = folder
    if not args.no_eval:
        report = timed("eval", evaluate_final, previous, world, out)
        for key, value in report.items():
            if "/" not in key or key.startswith("all/"):
                extra = f"  yes-ratio {value['yes_ratio']:.2f}" if "yes_ratio" in value else ""
                print(f"[recipe] {key:14s} {value['accuracy']:.3f}  (n={value['n']}){extra}")
    timings_file.write_text(json.dumps(timings, indent=2) + "\n")
    print(f"[recipe] this run {sum(ran.values()):.0f} s; the model's steps from nothing "
          f"{sum(timings.values()):.0f} s: {timings}")
    if args.export:
        export(previous, Path(args.export))
        print(f"[recipe] exported {previous} -> {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

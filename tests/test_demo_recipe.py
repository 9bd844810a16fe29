"""The demo model's recipe and its use as a gate for the pipeline (docs/demo-model.md).

- The short recipe (what CI can afford, 3-5 minutes) runs every stage and learns: its losses fall and it tells
  colours on pictures drawn by another program (>= 80 %). Run twice, every stage is reused and the world is not
  drawn again.
- The committed model fails as it should when the pipeline is broken on purpose: without the image, with
  another question's picture, or with SOI and EOI swapped, its accuracy falls to chance (it was trained to
  take only what stands between SOI and EOI for a picture: tasks.unframed_task). So the held-out demo eval
  notices a broken image path or a misplaced frame.
- A damaged checkpoint file is refused with a message that names the file.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from model.checkpoint import PACKAGED
from model.config import preset_config
from model.omnifusion import OmniFusion
from model.weights import DamagedCheckpoint
from training.demo_world.build import build_eval
from training.demo_world.evaluate import evaluate
from training.evaluation.runner import Prompt

ROOT = Path(__file__).resolve().parent.parent
CHANCE = {"colour": 1 / 6, "shape": 1 / 3}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Held-out pictures of one shape drawn by another program (matplotlib), 40 colour and 40 shape questions in
    both languages: what the demo model answers best, so a broken image path shows most clearly."""
    return build_eval(tmp_path_factory.mktemp("held-out") / "world", n=0, other=80, seed=4242, processes=1)


@pytest.fixture(scope="module")
def demo_model() -> OmniFusion:
    return OmniFusion.from_pretrained(PACKAGED["demo"], device="cpu", dtype=torch.float32)


def accuracy(model, world: Path, skill: str, transform=None) -> float:
    report = evaluate(model, world, files=("eval_other.jsonl",), progress=False, transform=transform)["report"]
    return report[f"other_{skill}"]["accuracy"]


def without_images(prompt: Prompt) -> Prompt:
    messages = [{**m, "content": [p for p in m["content"] if p["type"] != "image"]} for m in prompt.messages()]
    return Prompt(messages, [])


@contextmanager
def soi_and_eoi_swapped(model: OmniFusion):
    """Every picture framed EOI ... SOI instead of SOI ... EOI: what a pipeline that mixed up the two markers
    would send (the learned vectors swapped, so every place that puts one gets the other)."""
    soi, eoi = model.special["SOI"].data.clone(), model.special["EOI"].data.clone()
    model.special["SOI"].data.copy_(eoi)
    model.special["EOI"].data.copy_(soi)
    try:
        yield model
    finally:
        model.special["SOI"].data.copy_(soi)
        model.special["EOI"].data.copy_(eoi)


@pytest.mark.slow
@pytest.mark.parametrize("skill", ["colour", "shape"])
def test_without_the_image_another_image_or_a_swapped_frame_answers_fall_to_chance(demo_model, held_out, skill):
    intact = accuracy(demo_model, held_out, skill)
    assert intact >= 0.8, f"the committed model answers {skill} questions right {intact:.0%} of the time"
    blind = accuracy(demo_model, held_out, skill, transform=without_images)
    shifted = accuracy(demo_model, held_out, skill, transform=another_image())
    with soi_and_eoi_swapped(demo_model):
        swapped = accuracy(demo_model, held_out, skill)
    assert accuracy(demo_model, held_out, skill) == intact  # the model is as it was
    # "chance": no better than guessing plus a margin for 40 questions
    assert blind <= CHANCE[skill] + 0.15, f"{skill} without the image: {blind:.0%}"
    assert shifted <= CHANCE[skill] + 0.2, f"{skill} with another question's picture: {shifted:.0%}"
    assert swapped <= CHANCE[skill] + 0.15, f"{skill} with SOI and EOI swapped: {swapped:.0%}"


def another_image():
    """Each question gets the picture of the question asked before it (the answers then follow that picture)."""
    seen: list = []

    def transform(prompt: Prompt) -> Prompt:
        seen.append(prompt.images)
        return Prompt(prompt.text, seen[-2] if len(seen) > 1 else prompt.images)

    return transform


def test_the_retrieval_diagnostic_reads_the_picture_and_where_the_model_looks(demo_model):
    """training/demo_world/retrieval.py, on the committed model: one attention layer reads a named shape's
    colour from the image vectors (97 % measured) and not from another picture's (chance); the model's heads
    look at the objects far beyond their share of the area, and the head stage 2 told where to look picks the
    named one out of the others (0.58 of its attention on the named object against 0.01 on the others, whose
    area is twice as large; the model before it split its attention by area: docs/demo-model.md, "Attention told
    where to look"), so the model names that object's colour."""
    from training.demo_world import retrieval

    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    cases = retrieval.named_object_cases(720, seed=11, image_size=size, patch=patch)
    vectors = retrieval.image_vectors(demo_model, cases)
    assert retrieval.probe(vectors, cases, train=600) >= 0.8
    assert retrieval.probe(vectors.roll(1, 0), cases, train=600) <= 1 / 6 + 0.15
    seen = retrieval.look(demo_model, cases[:60])
    objects = seen["on_target"] + seen["on_others"]  # [layers, heads]
    area = seen["area_target"] + seen["area_others"]
    assert 0 < area < 0.3 and bool(((objects >= 0) & (objects <= 1 + 1e-5)).all())
    assert objects.max().item() >= 3 * area, (objects, area)
    focused = seen["on_target"][1, 0].item()  # layer 1, head 0: stage2.yaml's focus_heads
    assert focused >= 0.3 and focused >= 5 * seen["on_others"][1, 0].item(), seen
    assert seen["colour_first"] >= 0.9
    for case in cases[:5]:  # the shares are of the named object and of the others: disjoint, within a patch
        assert ((case.target + case.others) <= 1 + 1e-9).all() and case.target.sum() > 0


def test_the_count_readout_reads_a_named_count_from_the_picture_and_not_from_another(demo_model):
    """training/demo_world/count_readout.py, on the committed model: a linear probe reads how many objects of the
    named colour there are from the tower's features under them (74 % measured on these 400, 80 % with 1,500)
    and from the last hidden state at BOT (72 %), and only at chance from another picture's (13 %, 18 %)."""
    from training.demo_world import count_readout

    items = count_readout.cases(400, seed=3)
    found, answers = count_readout.readings(demo_model, items, answer=False)
    heads = [f"head {layer}:{h}" for layer in (0, 1) for h in range(4)]
    assert sorted(found) == ["adapter", *heads, "residual 0", "residual 1", "tower"] and answers == []
    assert all(v.shape[0] == len(items) for v in found.values())
    counts = torch.tensor([min(c, 5) for *_, c in items])
    assert len(set(counts.tolist())) == 6  # every count, none named (0) to five
    assert count_readout.count_probe(found["tower"], counts) >= 0.6
    assert count_readout.count_probe(found["residual 1"], counts) >= 0.6
    for stage in ("tower", "residual 1"):
        assert count_readout.count_probe(found[stage].roll(1, 0), counts) <= 0.35


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_short_recipe_learns_and_a_second_run_reuses_it(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "training.demo_world.recipe", "--short", "--out", str(out)]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # It learns: the tower's loss falls by more than half, stage 2's by more than two thirds, and it sees colour:
    # one shape drawn by another program (matplotlib), 100 questions in both languages, chance 1 in 6 (100 % when
    # measured; a broken image path gives chance, as the test above shows on the committed model). The other
    # skills need the full recipe (docs/demo-model.md); the committed model's are checked above and in
    # tests/test_demo_model.py.
    for stage, factor in (("vision", 2.0), ("stage2", 3.0)):
        losses = [float(row["loss"]) for row in csv.DictReader((out / stage / "metrics.csv").open())]
        assert losses[-1] * factor < losses[0], (stage, losses)
    report = json.loads((out / "eval.json").read_text())
    assert {"colour", "shape", "count", "exists", "position", "two_photos", "other_colour"} <= set(report)
    llm = json.loads((out / "stage2" / "llm" / "config.json").read_text())  # the preset's RoPE base, from init on
    assert llm["rope_parameters"]["rope_theta"] == preset_config("demo").llm_rope_theta
    colour = report["other_colour"]
    assert colour["n"] >= 100 and colour["accuracy"] >= 0.8, colour
    made = json.loads((out / "timings.json").read_text())
    assert {"world", "init", "vision", "stage1", "balance", "stage2", "eval"} <= set(made) and made["vision"] > 1
    second = subprocess.run([*command, "--no-eval"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[recipe] world: drawn before, reused" in second.stdout
    for stage in ("init", "vision", "stage1", "balance", "stage2"):
        assert f"[recipe] {stage}: done before, reused" in second.stdout
    # timings.json still says what each step of the model took when it ran, not the seconds of the rerun
    assert json.loads((out / "timings.json").read_text()) == made


def test_a_damaged_checkpoint_file_is_named(tmp_path):
    damaged = tmp_path / "demo"
    shutil.copytree(PACKAGED["demo"], damaged)
    adapter = damaged / "adapter.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])
    with pytest.raises(DamagedCheckpoint, match="adapter.safetensors"):
        OmniFusion.from_pretrained(damaged, device="cpu", dtype=torch.float32)
    shutil.copy2(PACKAGED["demo"] / "adapter.safetensors", adapter)
    weights = next((damaged / "llm").glob("*.safetensors"))
    weights.write_bytes(b"\0" * 64)
    with pytest.raises(DamagedCheckpoint, match=weights.name):
        OmniFusion.from_pretrained(damaged, device="cpu", dtype=torch.float32)


def test_balance_makes_a_quiet_attribute_as_loud_as_a_loud_one_in_the_picture_average():
    """The recipe's `balance` step (training/demo_world/balance.py): two attributes of a picture, one moving its
    tokens' average 10x more than the other, move the adapter output's average about equally afterwards, at the
    token norm the old weight gave."""
    from training.demo_world.balance import whitening

    g = torch.Generator().manual_seed(0)
    pictures, tokens, width = 400, 12, 16
    loud, quiet = torch.randint(0, 2, (pictures,), generator=g), torch.randint(0, 2, (pictures,), generator=g)
    u, v = torch.eye(width)[0], torch.eye(width)[1]
    x = torch.randn(pictures, tokens, width, generator=g)
    x += (10.0 * loud[:, None] * u + 1.0 * quiet[:, None] * v)[:, None, :]
    linear = torch.randn(32, width, generator=g) / width**0.5

    def separation(weight, bias, labels):
        means = (x.mean(1) @ weight.T + bias)
        return (means[labels == 1].mean(0) - means[labels == 0].mean(0)).norm().item()

    zero = torch.zeros(32)
    before = separation(linear, zero, loud) / separation(linear, zero, quiet)
    weight, bias = whitening(x, linear)
    after = separation(weight, bias, loud) / separation(weight, bias, quiet)
    assert before > 8 and 0.5 < after < 2.0, (before, after)
    old_norm = (x.reshape(-1, width) @ linear.T).norm(dim=1).mean()
    new_norm = (x.reshape(-1, width) @ weight.T + bias).norm(dim=1).mean()
    assert abs(new_norm / old_norm - 1) < 0.05


def test_a_folder_is_replaced_whole_or_left_as_it_was(tmp_path):
    from training.folders import replaced_atomically

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), replaced_atomically(dest) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial folder left behind
    assert [p.name for p in dest.iterdir()] == ["old.txt"]
    with replaced_atomically(dest) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.txt"]


def test_a_step_is_redone_when_the_step_before_it_changed(tmp_path):
    from training.demo_world.recipe import begin, record, started_from

    before, folder = tmp_path / "stage1", tmp_path / "stage2"
    before.mkdir()
    (before / "config.json").write_text("{}")
    (before / "adapter.safetensors").write_bytes(b"stage one, first run")
    folder.mkdir()
    (folder / "checkpoint").write_text("half done")
    assert not started_from(before, folder)  # a folder that does not say what it came from is not trusted
    begin(before, folder)
    assert not (folder / "checkpoint").exists() and started_from(before, folder)
    (folder / "checkpoint").write_text("half done")
    begin(before, folder)  # the same start: what is there is kept, to resume from
    assert (folder / "checkpoint").exists()
    record(before, folder)
    (before / "adapter.safetensors").write_bytes(b"stage one, run again")
    assert not started_from(before, folder)
    begin(before, folder)
    assert not (folder / "checkpoint").exists()


def test_a_step_is_redone_when_its_settings_changed(tmp_path, monkeypatch):
    """Edit a stage's config (more steps, say) and run the recipe again: that stage must run, not be reused."""
    from training.demo_world import recipe

    configs = tmp_path / "configs"
    shutil.copytree(recipe.CONFIGS, configs)
    monkeypatch.setattr(recipe, "CONFIGS", configs)
    before = tmp_path / "vision"
    before.mkdir()
    (before / "config.json").write_text("{}")
    first = recipe.step_digest("stage2", before, seed=0, short=False, scale=1)
    assert recipe.step_digest("stage2", before, seed=0, short=False, scale=1) == first
    assert recipe.step_digest("stage2", before, seed=1, short=False, scale=1) != first
    assert recipe.step_digest("stage2", before, seed=0, short=True, scale=1) != first  # --short adds max_steps
    assert recipe.step_digest("vision", before, 0, False, 2) != recipe.step_digest("vision", before, 0, False, 1)
    assert recipe.step_digest("balance", before, 0, True, 1) != recipe.step_digest("balance", before, 0, False, 1)
    stage2 = configs / "stage2.yaml"
    stage2.write_text("# a comment changes nothing\n" + stage2.read_text())
    assert recipe.step_digest("stage2", before, seed=0, short=False, scale=1) == first
    # one more epoch than the YAML asks, whatever it asks (the number has changed before)
    stage2.write_text(re.sub(r"^epochs: (\d+)$", lambda m: f"epochs: {int(m[1]) + 1}", stage2.read_text(),
                             count=1, flags=re.M))
    assert recipe.step_digest("stage2", before, seed=0, short=False, scale=1) != first
    balance = recipe.step_digest("balance", before, 0, False, 1)
    (before / "config.json").write_text('{"another": "model"}')  # the step before it ran again
    assert recipe.step_digest("balance", before, 0, False, 1) != balance
    # its own data changed (more dialogs, say): that step runs again, not one before it that reads other files
    world = tmp_path / "world"
    world.mkdir()
    (world / "manifest.json").write_text('{"version": 1}')
    for name in ("vision.jsonl", "stage2.json"):
        (world / name).write_text("[]")
    vision, stage2 = (recipe.step_digest(s, before, 0, False, 1, world) for s in ("vision", "stage2"))
    (world / "stage2.json").write_text("[{}]")
    assert recipe.step_digest("stage2", before, 0, False, 1, world) != stage2
    assert recipe.step_digest("vision", before, 0, False, 1, world) == vision
    (world / "manifest.json").write_text('{"version": 2}')  # the generator draws its pictures otherwise
    assert recipe.step_digest("vision", before, 0, False, 1, world) != vision


def test_a_scaled_recipe_trains_on_more_and_is_scored_on_the_same_held_out_set(tmp_path):
    # `--scale N` is for a machine with a GPU: N times the training data and steps. Its accuracy only compares
    # with the recipe's if the held-out set and the tokenizer's text are the very same files.
    from training.demo_world.build import WorldSizes, build
    from training.demo_world.recipe import main, scaled, stage_steps

    small = WorldSizes(vision=12, stage1=4, stage2=10, eval=18, other=3, text=20)
    double = scaled(small, 2)
    assert (double.vision, double.stage1, double.stage2) == (24, 8, 20)
    one, two = build(tmp_path / "one", small), build(tmp_path / "two", double, processes=3)
    for name in ("eval.jsonl", "eval_other.jsonl", "text.jsonl"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    dialogs = [json.loads((w / "stage2.json").read_text()) for w in (one, two)]
    assert len(dialogs[1]) == 2 * len(dialogs[0]) and dialogs[1][:10] == dialogs[0]
    assert len((two / "vision.jsonl").read_text().splitlines()) == 24
    # the vision stage counts steps, not epochs: the recipe asks for N times its config's
    vision_steps = yaml.safe_load((ROOT / "training" / "configs" / "demo" / "vision.yaml").read_text())["max_steps"]
    assert stage_steps("vision", False, 3) == ["--max_steps", str(3 * vision_steps)]
    assert stage_steps("stage2", False, 3) == []
    assert stage_steps("stage2", True, 1) == ["--max_steps", "220"]
    for wrong in (["--scale", "0"], ["--short", "--scale", "2"]):
        with pytest.raises(SystemExit):
            main([*wrong, "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()

"""The vision stage: targets from instance masks land on the right patches, and a run trains the tower alone."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from training.demo_world.build import WorldSizes, build
from training.run import main as run_main
from training.vision_stage import HEADS_FILE, VisionTargets, load_vision_records

TARGETS = VisionTargets({"colour": ["blue", "red"], "shape": ["circle", "square"]}, max_count=3)


def mask_with(boxes, size=(96, 96)):
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for i, box in enumerate(boxes):
        draw.rectangle(box, fill=i + 1)
    return mask


def test_patches_of_an_object_get_its_attributes_its_centre_and_the_counts():
    # 96 px, patches of 16: a 6 x 6 grid. Object 0 fills patches (row 1, cols 1-2); object 1 one patch at (4, 4).
    mask = mask_with([(16, 16, 47, 31), (64, 64, 79, 79)])
    t = TARGETS.for_image(mask, [{"colour": "red", "shape": "square"}, {"colour": "blue", "shape": "circle"}],
                          96, 16)
    owner = t["instance"].view(6, 6)
    assert owner[1, 1] == owner[1, 2] == 1 and owner[4, 4] == 2 and owner.count_nonzero() == 3
    assert t["value:colour"].view(6, 6)[1, 1] == 1 and t["value:colour"].view(6, 6)[4, 4] == 0
    assert t["value:shape"].view(6, 6)[4, 4] == 0 and t["value:colour"].view(6, 6)[0, 0] == -1
    assert t["centre"].view(6, 6)[1, 2] == 1 and t["centre"].view(6, 6)[4, 4] == 1 and t["centre"].sum() == 2
    assert torch.allclose(t["where"].view(6, 6, 2)[4, 4], torch.tensor([72 / 96, 72 / 96]))
    assert t["count"] == 2 and t["count:colour"].tolist() == [1, 1] and t["count:shape"].tolist() == [1, 1]


def test_each_patch_learns_how_many_objects_are_like_its_own():
    # Two red squares and a blue circle: a red square's patches say two of its colour, two of its shape; the
    # circle's one and one; every patch, the background too, three in all.
    mask = mask_with([(16, 16, 31, 31), (64, 16, 79, 31), (32, 64, 47, 79)])
    t = TARGETS.for_image(mask, [{"colour": "red", "shape": "square"}, {"colour": "red", "shape": "square"},
                                 {"colour": "blue", "shape": "circle"}], 96, 16)
    grid = {k: t[k].view(6, 6) for k in ("same:colour", "same:shape", "total")}
    assert [int(grid[k][1, 1]) for k in ("same:colour", "same:shape")] == [2, 2]
    assert [int(grid[k][4, 2]) for k in ("same:colour", "same:shape")] == [1, 1]
    assert grid["same:colour"][0, 0] == -1 and (grid["same:colour"] >= 0).sum() == 3
    assert (grid["total"] == 3).all()
    # A red circle instead of the blue one makes red three and leaves squares at two.
    t = TARGETS.for_image(mask_with([(16, 16, 31, 31), (64, 16, 79, 31), (32, 64, 47, 79)]),
                          [{"colour": "red", "shape": "square"}, {"colour": "red", "shape": "square"},
                           {"colour": "red", "shape": "circle"}], 96, 16)
    assert t["same:colour"].view(6, 6)[1, 1] == 3 and t["same:shape"].view(6, 6)[1, 1] == 2
    assert "same:combo" not in t


def test_masks_follow_the_pictures_resize_and_centre_crop():
    # 192 x 96: the model sees the central 96 x 96 after scaling; an object at the far left is cut away.
    mask = mask_with([(0, 40, 20, 60), (100, 40, 120, 60)], size=(192, 96))
    t = TARGETS.for_image(mask, [{"colour": "red", "shape": "square"}] * 2, 96, 16)
    assert t["count"] == 1, "the cropped-away object is not counted"
    assert t["instance"].view(6, 6)[2:4, 0:2].tolist() == [[0, 2], [2, 2]] or t["instance"].max() == 2
    assert (t["instance"] == 1).sum() == 0


def test_records_define_the_heads_and_bad_ones_are_counted(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    mask_with([(0, 0, 3, 3)], (8, 8)).save(tmp_path / "a.mask.png")
    rows = [{"image": "a.png", "mask": "a.mask.png", "objects": [{"colour": "red", "shape": "circle"}]},
            {"image": "a.png", "mask": "a.mask.png", "objects": [{"colour": "red"}]},  # attribute missing
            {"image": "../a.png", "mask": "a.mask.png", "objects": []},
            {"image": "gone.png", "mask": "a.mask.png", "objects": []},
            {"image": "a.png"}]
    (tmp_path / "v.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    records, report, _, targets = load_vision_records(tmp_path / "v.jsonl", None)
    assert len(records) == 1 and targets.attributes == {"colour": ["red"], "shape": ["circle"]}
    assert report.skipped == {"bad_record": 2, "outside_root": 1, "missing_image": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("world"), WorldSizes(vision=48, stage1=4, stage2=4, eval=2, other=2,
                                                              text=8, seed=1), processes=1)


def run(world, out, *extra):
    argv = ["--stage", "vision", "--preset", "tiny", "--data", str(world / "vision.jsonl"), "--output_dir", str(out),
            "--batch_size", "8", "--micro_batch_size", "4", "--max_steps", "4", "--lr", "3e-3", "--num_workers", "0",
            "--save_every", "2", "--log_every", "1", "--gradient_checkpointing", "false", *extra]
    assert run_main(argv) == 0


@pytest.mark.slow
def test_the_vision_stage_trains_the_tower_alone_and_resumes_exactly(world, tmp_path):
    from model.checkpoint import build_in_memory
    from model.config import preset_config

    start = build_in_memory(preset_config("tiny").replace(seed=42), device="cpu")
    run(world, tmp_path / "straight")
    run(world, tmp_path / "cut", "--stop_at", "2")
    run(world, tmp_path / "cut", "--resume", "latest")
    straight, resumed = tmp_path / "straight", tmp_path / "cut"
    tower = load_file(str(straight / "vision.safetensors"))
    before = start.vision.tower.state_dict()
    assert any(not torch.equal(tower[k], before[k]) for k in tower), "the tower must learn"
    llm = load_file(str(straight / "llm" / "model.safetensors"))
    assert all(torch.equal(llm[k], v) for k, v in start.llm.state_dict().items() if k in llm), "the LLM is frozen"
    adapter = load_file(str(straight / "adapter.safetensors"))
    assert torch.equal(adapter["linear.weight"], start.adapter.linear.weight.detach())
    for name in ("vision.safetensors", HEADS_FILE):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: a resumed run must equal the straight one"
    losses = [float(r.split(",")[2]) for r in (straight / "metrics.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 and np.isfinite(losses).all()


def test_a_feature_cache_makes_no_sense_for_the_vision_stage(world, tmp_path, capsys):
    argv = ["--stage", "vision", "--data", str(world / "vision.jsonl"), "--output_dir", str(tmp_path),
            "--feature_cache", str(tmp_path / "f")]
    assert run_main(argv) == 2
    assert "feature_cache" in capsys.readouterr().err

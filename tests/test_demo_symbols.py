"""training/demo_world/symbols.py: the demo LLM trained on exact pictures (word embeddings at the patches)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

from model.checkpoint import PACKAGED
from model.omnifusion import OmniFusion
from training.demo_world import symbols
from training.demo_world.scenes import random_scene


@pytest.fixture
def demo_model() -> OmniFusion:  # one per test: the second trains it
    torch.manual_seed(0)
    return OmniFusion.from_pretrained(PACKAGED["demo"], device="cpu", dtype=torch.float32)


def test_a_picture_is_spelled_at_its_objects_patches(demo_model):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    scene = random_scene(random.Random(3), kinds=[("circle", "red"), ("square", "blue")])
    owners = symbols.patch_owners(scene, size, patch)
    assert len(owners) == (size // patch) ** 2 and set(owners) == {-1, 0, 1}
    spell = symbols.Symbols(demo_model.tokenizer)
    table = demo_model.llm.get_input_embeddings().weight.detach()
    vectors = spell.vectors(table, scene, owners)
    background = int((owners == -1).nonzero()[0][0])
    for i, obj in enumerate(scene.objects):
        k = int((owners == i).nonzero()[0][0])
        region = spell.region[obj.region] if obj.region else spell.background
        expected = table[spell.colour[obj.colour]] + table[spell.shape[obj.shape]] + table[region]
        assert torch.allclose(vectors[k], expected)
    assert torch.allclose(vectors[background], 3 * table[spell.background])
    words = [*spell.colour.values(), *spell.shape.values(), *spell.region.values(), spell.background]
    assert len(set(words)) == len(words) == 6 + 3 + 5 + 1  # every word its own token


def test_a_region_is_spelled_at_the_patches_of_an_object_placed_there(demo_model):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    spell = symbols.Symbols(demo_model.tokenizer)
    table = demo_model.llm.get_input_embeddings().weight.detach()
    for region in ("left", "top", "centre"):
        scene = random_scene(random.Random(4), kinds=[("triangle", "green")], regions=[region])
        owners = symbols.patch_owners(scene, size, patch)
        vectors = spell.vectors(table, scene, owners)
        k = int((owners == 0).nonzero()[0][0])
        rest = table[spell.colour["green"]] + table[spell.shape["triangle"]]
        assert scene.objects[0].region == region
        assert torch.allclose(vectors[k] - rest, table[spell.region[region]])


def test_named_questions_only_and_training_on_symbols_lowers_the_loss(demo_model):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    items = symbols.dialogs(40, 5, symbols.named_only(), size, patch)
    kinds = Counter(sample["expect"]["kind"] for sample, _, _ in items)
    assert set(kinds) == {"colour", "shape", "position", "yesno"}, kinds
    for sample, _, owners in items:
        (scene,) = sample["scenes"]
        assert len(owners) == 1
        asked = sample["expect"]["kind"]
        if asked in ("colour", "shape"):  # the colour of the one shape named, or the shape of the one colour
            named = "shape" if asked == "colour" else "colour"
            assert len(scene.objects) >= 2 and 1 in Counter(getattr(o, named) for o in scene.objects).values()
        if asked == "position":
            assert len(scene.objects) >= 2 and sample["expect"]["value"] == scene.objects[0].region
    before = [p.detach().clone() for p in demo_model.adapter.parameters()]
    # from a random LLM, as symbols.py is run: the committed LLM already answers these at a loss of ~0.3,
    # where 12 steps of 8 move it by less than their batches differ
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in demo_model.llm.named_parameters():
            weight.fill_(1.0) if "norm" in name else weight.normal_(0.0, 0.02)  # Mistral's init
    losses = symbols.train(demo_model, items, steps=12, lr=1e-3, batch=8, log=lambda _: None)
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), losses
    # only the LLM and the four vectors learn: the adapter (and the tower) are left as they were
    assert all(torch.equal(a, b) for a, b in zip(before, demo_model.adapter.parameters(), strict=True))
    assert 0.0 <= symbols.answers_right(demo_model, items[:4]) <= 1.0


def test_an_interrupted_run_resumes_where_it_stopped_with_the_same_batches(demo_model, tmp_path):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    items = symbols.dialogs(16, 6, symbols.named_only(), size, patch)
    start = {k: v.clone() for k, v in demo_model.state_dict().items()}
    state = tmp_path / "state.pt"
    whole = symbols.train(demo_model, items, steps=6, batch=4, state=state, save_every=3, log=lambda _: None)
    assert state.is_file()  # the state of step 3 (none is written at the end: the finished model is)
    finished = {k: v.clone() for k, v in demo_model.state_dict().items()}
    demo_model.load_state_dict(start)
    seen = []
    resumed = symbols.train(demo_model, items, steps=6, batch=4, state=state, save_every=3, log=seen.append)
    assert any("resumed at step 3" in line for line in seen), seen
    assert resumed == whole  # the same batches in the same order, the same losses
    assert all(torch.allclose(finished[k], v) for k, v in demo_model.state_dict().items())


def test_a_run_writes_a_model_and_what_it_answers_per_kind_of_question(tmp_path):
    out = tmp_path / "symbols"
    report = symbols.run(PACKAGED["demo"], out, steps=4, log=lambda _: None)
    assert set(report["held_out_right"]) == {"colour", "shape", "position", "yesno"}
    assert all(0.0 <= v <= 1.0 for v in report["held_out_right"].values())
    assert json.loads((out / symbols.DONE).read_text()) == report and not (out / "state.pt").exists()
    trained = OmniFusion.from_pretrained(out, device="cpu", dtype=torch.float32)
    packaged = OmniFusion.from_pretrained(PACKAGED["demo"], device="cpu", dtype=torch.float32)
    assert torch.equal(trained.adapter.linear.weight, packaged.adapter.linear.weight)  # the adapter is untouched
    changed = [n for n, p in trained.llm.named_parameters() if not torch.equal(p, packaged.llm.get_parameter(n))]
    assert changed  # the LLM learned


def test_without_regions_every_object_patch_spells_a_dot_for_its_place(demo_model):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    scene = random_scene(random.Random(4), kinds=[("square", "red")], regions=["left"])
    owners = symbols.patch_owners(scene, size, patch)
    table = demo_model.llm.get_input_embeddings().weight.detach()
    plain = symbols.Symbols(demo_model.tokenizer, region=False)
    k = int((owners == 0).nonzero()[0][0])
    expected = table[plain.colour["red"]] + table[plain.shape["square"]] + table[plain.background]
    assert torch.allclose(plain.vectors(table, scene, owners)[k], expected)

"""training/demo_world/symbols.py: the demo LLM trained on exact pictures (word embeddings at the patches)."""

from __future__ import annotations

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
        expected = table[spell.colour[obj.colour]] + table[spell.shape[obj.shape]]
        assert torch.equal(vectors[k], expected)
    assert torch.equal(vectors[background], 2 * table[spell.background])
    assert len({spell.colour["red"], spell.colour["blue"], spell.shape["circle"], spell.shape["square"]}) == 4


def test_named_questions_only_and_training_on_symbols_lowers_the_loss(demo_model):
    size, patch = demo_model.config.vision_image_size, demo_model.config.vision_patch_size
    items = symbols.dialogs(24, 5, symbols.named_only(), size, patch)
    for sample, _, owners in items:
        (scene,) = sample["scenes"]
        assert len(scene.objects) >= 2 and len(owners) == 1
        asked = sample["expect"]["kind"]  # the colour of the one shape named, or the shape of the one colour
        named = "shape" if asked == "colour" else "colour"
        assert 1 in Counter(getattr(o, named) for o in scene.objects).values()
    before = [p.detach().clone() for p in demo_model.adapter.parameters()]
    losses = symbols.train(demo_model, items, steps=12, lr=1e-3, batch=8, log=lambda _: None)
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), losses
    # only the LLM and the four vectors learn: the adapter (and the tower) are left as they were
    assert all(torch.equal(a, b) for a, b in zip(before, demo_model.adapter.parameters(), strict=True))
    assert 0.0 <= symbols.answers_right(demo_model, items[:4]) <= 1.0

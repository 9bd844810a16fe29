"""Attention told where to look: what the demo world says each answer is about, how records carry it, the
positions it becomes, and a loss that really moves the heads it names."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import build_in_memory
from model.config import preset_config
from model.dialog import IGNORE
from model.omnifusion import OmniFusion
from tests.model_helpers import drawn_image
from training.config import ConfigError, build_config, focus_heads
from training.data import DialogDataset, collate
from training.demo_world.build import WorldSizes, build
from training.demo_world.focus import record_focus
from training.demo_world.scenes import Scene, Shape
from training.records import Sample, load_samples
from training.run import main as run_main
from training.trainee import FOCUS_REACH, CountProbe, Trainee, centre_cell, focus_masks, object_patches

# A red circle on the left, a blue square on the right (unit square, radius 0.1).
TWO = Scene([Shape("circle", "red", 0.25, 0.5, 0.1), Shape("square", "blue", 0.75, 0.5, 0.1)])
ONE = Scene([Shape("triangle", "green", 0.5, 0.25, 0.12)])


def human(text, images=0):
    return {"from": "human", "value": "<image>\n" * images + text}


def gpt(text):
    return {"from": "gpt", "value": text}


def test_each_answer_looks_at_what_its_question_names():
    focus = record_focus([human("Hello!"), gpt("Hi."),
                          human("What colour is the circle?", 1), gpt("It is red."),
                          human("Is there a green triangle?"), gpt("No."),
                          human("Какого цвета квадрат?"), gpt("Синий."),
                          human("How many shapes are there?"), gpt("Two.")], [TWO])
    assert focus[0] is None  # no picture yet
    assert focus[1] == [{"image": 0, "objects": [[0.25, 0.5, 0.1]]}]
    assert focus[2] == [{"image": 0, "objects": []}]  # nothing it names is there: the picture's SOI
    assert focus[3] == [{"image": 0, "objects": [[0.75, 0.5, 0.1]]}]
    assert focus[4] == [{"image": 0, "objects": [[0.25, 0.5, 0.1], [0.75, 0.5, 0.1]]}]


def test_the_picture_a_question_names_is_the_one_looked_at():
    together = record_focus([human("What colour is the shape in the second picture?", 2), gpt("Green.")],
                            [TWO, ONE])
    assert together == [[{"image": 1, "objects": [[0.5, 0.25, 0.12]]}]]
    later = record_focus([human("What colour is it?", 1), gpt("Green."), human("And this one?", 1), gpt("Red.")],
                         [ONE, TWO])
    assert [e[0]["image"] for e in later] == [0, 1]  # a new photo: the new one
    assert record_focus([human("What colour is it?", 1), gpt("Please send me a picture first.")], [ONE],
                        broken_frame=True) == [None]


def test_records_carry_the_focus_of_the_answers_they_keep(tmp_path):
    entry = [{"image": 0, "objects": [[0.25, 0.5, 0.1]]}]
    records = [
        # a leading assistant turn is dropped, and its focus with it
        {"id": "a", "image": ["p.png"], "conversations": [gpt("Welcome."), human("What colour is the circle?", 1),
                                                           gpt("Red.")], "focus": [None, entry]},
        {"id": "b", "image": ["p.png"], "conversations": [human("Hi", 1), gpt("Hi.")], "focus": [entry, entry]},
        {"id": "c", "image": ["p.png"], "conversations": [human("Hi", 1), gpt("Hi.")],
         "focus": [[{"image": 1, "objects": []}]]},
        {"id": "d", "image": ["p.png"], "conversations": [human("Hi", 1), gpt("Hi.")],
         "focus": [[{"image": 0, "objects": [[0.5, 0.5]]}]]},
        {"id": "e", "image": ["p.png"], "conversations": [human("Hi", 1), gpt("Hi.")]},
    ]
    path = tmp_path / "dialogs.json"
    path.write_text(json.dumps(records))
    samples, report, _ = load_samples(path, tmp_path, "Describe.", check_files=False)
    assert [s.focus for s in samples] == [[entry], None]
    assert report.skipped["bad_focus"] == 3  # more entries than answers, no picture 1, an object of two numbers


def test_objects_cover_the_patches_under_them():
    # 6 x 6 patches over the unit square (centres 1/12 + k/6). The circle at (0.25, 0.5) of radius 0.1 straddles
    # rows 2 and 3 of column 1, whose centres lie 0.083 from its own: outside its core (0.6 of its radius), so
    # only the patch of its centre (row 3). A disk of radius 0.3 at the middle: the four patches around it.
    assert FOCUS_REACH == 0.6
    assert object_patches(0.25, 0.5, 0.1, 6) == [19]
    assert object_patches(0.95, 0.95, 0.01, 6) == [35]  # a speck: its own patch
    assert object_patches(0.5, 0.5, 0.3, 6) == [14, 15, 20, 21]
    assert object_patches(0.5, 0.5, 0.5, 6) == [8, 9, 13, 14, 15, 16, 19, 20, 21, 22, 26, 27]  # a disk: no corners


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("focus")
    for name, colour, shape in (("red.png", (220, 30, 30), "circle"), ("blue.png", (30, 30, 220), "square")):
        drawn_image(colour, (48, 48), shape).save(root / name)
    model = build_in_memory(preset_config("tiny"), device="cpu", dtype=torch.float32)
    model.llm.set_attn_implementation("eager")
    return model, root


def batch_of(model, root):
    circle = [{"image": 0, "objects": [[0.5, 0.5, 0.25]]}]
    samples = [Sample([{"role": "user", "content": [{"type": "image", "key": name},
                                                     {"type": "text", "text": "What shape is it?"}]},
                       {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                       {"role": "user", "content": [{"type": "text", "text": "Is there a green one?"}]},
                       {"role": "assistant", "content": [{"type": "text", "text": "No."}]}],
                      [name], focus=[circle, [{"image": 0, "objects": []}]])
               for name, answer in (("red.png", "A circle."), ("blue.png", "A square."))]
    dataset = DialogDataset(samples, model.tokenizer, model.config, 512, root)
    return collate([dataset[0], dataset[1]])


def test_focus_becomes_the_positions_of_the_question_and_answer_and_the_objects_patches(tiny):
    model, root = tiny
    batch = batch_of(model, root)
    dialog = batch.dialogs[0]
    queries, keys, counts, tally = focus_masks(dialog, batch.focus[0], len(dialog))
    first = dialog.image_positions()[0]
    users = [p for p, s in _positions(dialog) if s.kind == "special" and s.name == "USER"]
    answers = [(p, len(s.ids)) for p, s in _positions(dialog) if s.kind == "text" and s.trained]
    # turn 1: from the word after USER to the answer's second-to-last token, at the circle's patches
    span = list(range(users[0] + 1, answers[0][0] + answers[0][1] - 1))
    assert all(queries[span]) and not queries[users[0]] and not queries[first]
    assert keys[0, span[0]].nonzero().flatten().tolist() == [first + c for c in object_patches(0.5, 0.5, 0.25, 6)]
    # turn 2: nothing green, so the picture's SOI (the position right before its first patch)
    assert keys[0, users[1] + 1].nonzero().flatten().tolist() == [first - 1]
    assert queries.sum() == len(span) + answers[1][0] + answers[1][1] - 1 - (users[1] + 1)
    # what the count probe reads from BOT on: one circle named, then no green one; nothing in the question
    bots = [p - 1 for p, _ in answers]
    assert counts[bots[0]:span[-1] + 1].tolist() == [1] * (span[-1] + 1 - bots[0]) and counts[bots[1]] == 0
    assert counts[users[0] + 1] == counts[bots[1] - 1] == IGNORE and (counts != IGNORE).sum() < queries.sum()
    # the tally head's target there: half on SOI, half on the circle's centre patch; SOI alone for no green one
    centre = first + centre_cell(0.5, 0.5, 6)
    assert tally[bots[0]].nonzero().flatten().tolist() == [first - 1, centre]
    assert tally[bots[0], [first - 1, centre]].tolist() == [0.5, 0.5]
    assert tally[bots[1]].nonzero().flatten().tolist() == [first - 1] and tally[bots[1]].sum() == 1
    assert torch.equal(tally.sum(-1) > 0, counts != IGNORE)
    # one picture: every focused head looks at it
    assert torch.equal(focus_masks(dialog, batch.focus[0], len(dialog), heads=2)[1], keys.expand(2, -1, -1))


def test_two_pictures_of_one_question_are_shared_out_among_the_heads(tiny):
    """"Which picture has more shapes?": one head on each picture (two totals to compare), not both heads
    on the average of the two."""
    model, root = tiny
    both = [{"image": 0, "objects": [[0.5, 0.5, 0.25]]}, {"image": 1, "objects": []}]
    sample = Sample([{"role": "user", "content": [{"type": "image", "key": "red.png"},
                                                  {"type": "image", "key": "blue.png"},
                                                  {"type": "text", "text": "Which picture has more red shapes?"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "The first."}]}],
                    ["red.png", "blue.png"], focus=[both])
    dialog = DialogDataset([sample], model.tokenizer, model.config, 512, root)[0]["dialog"]
    first, second = dialog.image_positions()
    circle = [first + c for c in object_patches(0.5, 0.5, 0.25, 6)]
    queries, keys, counts, tally = focus_masks(dialog, [both], len(dialog), heads=2)
    at = queries.nonzero().flatten().tolist()
    assert at and len(at) == queries.sum()
    assert keys[0, at[0]].nonzero().flatten().tolist() == circle
    assert keys[1, at[0]].nonzero().flatten().tolist() == [second - 1]  # nothing red there: its SOI
    assert set(counts[at].tolist()) == {IGNORE, 1}  # the count of head 0's picture
    assert set(tally.nonzero()[:, 1].tolist()) == {first - 1, first + centre_cell(0.5, 0.5, 6)}  # head 0's picture
    _, one, _, _ = focus_masks(dialog, [both], len(dialog), heads=1)
    assert one[0, at[0]].nonzero().flatten().tolist() == sorted(circle + [second - 1])  # one head: both
    _, three, _, _ = focus_masks(dialog, [both], len(dialog), heads=3)
    assert torch.equal(three[2], keys[0])  # a third head: the first picture again


def test_a_broken_frame_trains_without_its_focus(tiny):
    """Swapped or missing markers move the SOI a focus may point at: such a dialog keeps its answers, not its focus."""
    model, root = tiny
    sample = Sample([{"role": "user", "content": [{"type": "image", "key": "red.png"},
                                                  {"type": "text", "text": "What shape is it?"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "A circle."}]}], ["red.png"],
                    image_markers="swapped", focus=[[{"image": 0, "objects": []}]])
    item = DialogDataset([sample], model.tokenizer, model.config, 512, root)[0]
    assert item["focus"] is None and item["dialog"].image_keys == ["red.png"]


def _positions(dialog):
    pos = 0
    for s in dialog.segments:
        yield pos, s
        pos += s.length(dialog.num_patches)


def loss_part(trainee, batch, weight_name: str) -> float:
    """One part of the loss alone (`focus_weight` or `count_weight`): the same batch with and without it (eval mode:
    no dropout)."""
    trainee.eval()
    weight = getattr(trainee, weight_name)
    with torch.no_grad():
        whole = trainee(batch).item()
        setattr(trainee, weight_name, 0.0)
        without = trainee(batch).item()
    setattr(trainee, weight_name, weight)
    trainee.train()
    return (whole - without) / weight


def trained_with_and_without(tiny, weight_name: str, make_trainee) -> dict:
    """{1.0: (the part before, after 30 steps trained with it), 0.0: (before, after 30 steps trained without it)};
    the model is restored afterwards. Seeded: the adapter's dropout draws from the global stream, and unseeded
    the tally's result wandered by 0.07 between runs (0.53-0.60 against a bound of 0.60)."""
    model, root = tiny
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    batch = batch_of(model, root)
    results = {}
    for weight in (1.0, 0.0):
        model.load_state_dict(start)
        trainee = make_trainee(model)
        before = loss_part(trainee, batch, weight_name)
        setattr(trainee, weight_name, weight)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        for _ in range(30):
            optimizer.zero_grad()
            trainee(batch).backward()
            optimizer.step()
        setattr(trainee, weight_name, 1.0)
        results[weight] = (before, loss_part(trainee, batch, weight_name))
    model.load_state_dict(start)
    return results


def test_the_focus_loss_moves_the_heads_it_names(tiny):
    results = trained_with_and_without(tiny, "focus_weight", lambda model: Trainee(
        model, cached_features=False, focus_weight=1.0, focus_heads=[(1, 0)]))
    (before, after), (_, unfocused) = results[1.0], results[0.0]
    # -log(attention mass on the focus): about log(sequence / focused vectors) at the start
    assert before > 1.5 and after < 0.3 * before and unfocused > 0.6 * before, results


@pytest.mark.parametrize("weight, heads, not_heads, too_far", [
    ("focus_weight", "focus_heads", "first", [(2, 0)]),  # layer 2 of 2
    ("tally_weight", "tally_head", "1:1,1:2", (1, 4)),  # one head only; head 4 of 4
])
def test_a_loss_on_attention_needs_eager_attention_and_real_heads(tiny, tmp_path, weight, heads, not_heads, too_far):
    data = tmp_path / "d.json"
    data.write_text("[]")
    base = {"stage": 2, "init_from": str(tmp_path), "data": str(data), weight: 0.3}
    with pytest.raises(ConfigError, match=f"{weight}: .*attention: eager"):
        build_config(base)
    with pytest.raises(ConfigError, match=f"{heads}: must be .*layer:head"):
        build_config({**base, "attention": "eager", heads: not_heads})
    assert focus_heads("0:1, 1:3") == [(0, 1), (1, 3)]
    with pytest.raises(ValueError, match=f"{heads} .*: the LLM has 2 layers of 4 heads"):
        Trainee(tiny[0], cached_features=False, **{weight: 0.3, heads: too_far})


def test_the_count_probe_makes_the_llm_carry_the_named_count(tiny):
    """The probe held fixed: only the LLM (and adapter) can lower its loss, by putting the count the focus names
    (one circle in turn 1, no green shape in turn 2) into the last hidden state. The answers alone do not."""
    results = trained_with_and_without(tiny, "count_weight", lambda model: Trainee(
        model, cached_features=False, count_weight=1.0,
        count_probe=CountProbe(model.llm.config.hidden_size, seed=3).requires_grad_(False)))
    (before, after), (_, untrained) = results[1.0], results[0.0]
    assert before > 0.5 and after < 0.1 * before and untrained > 0.5 * before, results


def test_the_tally_loss_shares_the_heads_attention_between_soi_and_the_named_centres(tiny):
    """Its cross-entropy against the even share (half on SOI, half on the circle's centre patch in turn 1; all on
    SOI in turn 2) falls to near its floor, the target's own entropy, only when trained with it."""
    results = trained_with_and_without(tiny, "tally_weight", lambda model: Trainee(
        model, cached_features=False, tally_weight=1.0, tally_head=(1, 1)))
    (before, after), (_, untrained) = results[1.0], results[0.0]
    floor = math.log(2) / 2  # turns 1 and 2 weigh by their positions; turn 2's floor is 0
    assert before > 2.0 and after < floor + 0.25 and untrained > 0.6 * before, results


@pytest.mark.slow
def test_the_count_probe_trains_beside_the_model_and_resumes_exactly(tmp_path):
    world = build(tmp_path / "world", WorldSizes(vision=4, stage1=4, stage2=16, eval=2, other=2, text=8, seed=1),
                  processes=1)
    init = tmp_path / "init"
    build_in_memory(preset_config("tiny").replace(seed=42), device="cpu").save_pretrained(init)

    def run(out, *extra):
        assert run_main(["--stage", "2", "--init_from", str(init), "--data", str(world / "stage2.json"),
                         "--output_dir", str(out), "--batch_size", "8", "--micro_batch_size", "4", "--max_steps",
                         "4", "--num_workers", "0", "--save_every", "2", "--gradient_checkpointing", "false",
                         "--attention", "eager", "--focus_weight", "1", "--count_weight", "1", *extra]) == 0

    run(tmp_path / "straight")
    run(tmp_path / "cut", "--stop_at", "2")
    run(tmp_path / "cut", "--resume", "latest")
    first = load_file(str(tmp_path / "cut" / "step-000002" / CountProbe.FILE))
    straight, resumed = (load_file(str(tmp_path / f / CountProbe.FILE)) for f in ("straight", "cut"))
    assert not torch.equal(first["weight"], straight["weight"]), "the probe must learn"
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), "a resumed run must equal the straight one"
    # The model is the model alone: it loads and serves without the probe.
    model = OmniFusion.from_pretrained(tmp_path / "straight", device="cpu")
    assert not any("probe" in k for k in model.state_dict())

"""training/records.py, training/data.py and training/sampler.py: records -> messages -> encoded dialogs; bad data is counted."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from model.checkpoint import build_in_memory
from model.config import preset_config
from model.dialog import IGNORE
from model.tokenizer import encode_segment
from training import data, records
from training.data import ClipPreprocess, DialogDataset, collate
from training.records import Sample, llava_sample, load_samples
from training.sampler import StepBatches


@pytest.fixture(scope="module")
def model():
    return build_in_memory(preset_config("tiny"), device="cpu")


def _texts(message):
    return [p["text"] for p in message["content"] if p["type"] == "text"]


def _images(message):
    return [p["key"] for p in message["content"] if p["type"] == "image"]


def test_llava_image_tag_is_removed_and_image_goes_to_its_turn():
    record = {"id": "1", "image": "cat.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Grey."}]}
    sample = llava_sample(record)
    assert [m["role"] for m in sample.messages] == ["user", "assistant", "user", "assistant"]
    assert _images(sample.messages[0]) == ["cat.jpg"] and _texts(sample.messages[0]) == ["What is this?"]
    assert not _images(sample.messages[2]) and sample.images == ["cat.jpg"]

    later = llava_sample({"image": "b.jpg", "conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "And this? <image>"}, {"from": "gpt", "value": "A dog."}]})
    assert _images(later.messages[2]) == ["b.jpg"] and _texts(later.messages[2]) == ["And this?"]
    assert not _images(later.messages[0])

    untagged = llava_sample({"image": "c.jpg", "conversations": [
        {"from": "human", "value": "Describe."}, {"from": "gpt", "value": "A car."}]})
    assert _images(untagged.messages[0]) == ["c.jpg"]  # the released place: before the first turn


def test_llava_text_only_and_broken_records():
    text_only = llava_sample({"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]})
    assert text_only.images == [] and not any(_images(m) for m in text_only.messages)
    assert llava_sample({"conversations": []}) == "empty_conversation"
    assert llava_sample({"id": "x"}) == "empty_conversation"
    assert llava_sample({"conversations": [{"from": "human", "value": "hi"}]}) == "no_answer"
    assert llava_sample({"conversations": [{"from": "alien", "value": "hi"}]}) == "unknown_role"
    assert records.caption_sample({"image": "a.png", "caption": "  "}, "p") == "bad_record"


def test_load_samples_counts_every_kind_of_bad_record(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    lines = [json.dumps({"image": "ok.png", "caption": "red"}),
             "{not json",
             json.dumps({"image": "gone.png", "caption": "missing"}),
             json.dumps({"id": "e", "conversations": []}),
             json.dumps({"id": "t", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
             json.dumps(["not", "a", "record"])]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    samples, report, root = load_samples(tmp_path / "mixed.jsonl", None, "Describe.")
    assert len(samples) == 2 and root == tmp_path
    assert report.total == 6
    assert dict(report.skipped) == {"broken_json": 1, "missing_image": 1, "empty_conversation": 1, "bad_record": 1}
    assert "1 lines that are not valid JSON" in report.summary()


def test_clip_preprocess_matches_the_model(model):
    """The workers' copy of the preprocessing must give exactly the pixels model.vision.preprocess gives."""
    for size in ((64, 64), (300, 40)):  # the second is past vision_max_aspect: padded to a square
        image = Image.new("RGB", size, (200, 30, 60))
        assert torch.equal(ClipPreprocess(model.config)(image), model.vision.preprocess([image])[0])


def test_dataset_labels_truncation_and_runtime_skips(model, tmp_path):
    Image.new("RGB", (16, 16), "blue").save(tmp_path / "blue.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    turns = [{"role": r, "content": [{"type": "text", "text": t}]}
             for r, t in [("user", "first question"), ("assistant", "first answer"),
                          ("user", "second question"), ("assistant", "second answer")]]
    image_turn = [{"role": "user", "content": [{"type": "image", "key": "blue.png"}, {"type": "text", "text": "q"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "blue"}]}]
    broken = [{"role": "user", "content": [{"type": "image", "key": "broken.png"}, {"type": "text", "text": "q"}]},
              {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]
    cfg = model.config.replace(prompt_append_eos=True)
    full = DialogDataset([Sample(turns, [])], model.tokenizer, cfg, 2048, tmp_path)[0]["dialog"]
    dataset = DialogDataset([Sample(turns, []), Sample(image_turn, ["blue.png"]), Sample(broken, ["broken.png"]),
                             Sample([*turns[:2], {"role": "user", "content": [{"type": "text", "text": "long " * 900}]},
                                     turns[3]], [])],
                            model.tokenizer, cfg, len(full) - 3, tmp_path)
    truncated = dataset[0]["dialog"]
    assert truncated.dropped_turns == 1  # the oldest turn went, the last answer stayed
    answer = encode_segment(model.tokenizer, "second answer") + [model.tokenizer.eos_token_id]
    assert [t for t in truncated.labels() if t != IGNORE] == answer
    first_full = encode_segment(model.tokenizer, "first answer") + [model.tokenizer.eos_token_id]
    assert [t for t in full.labels() if t != IGNORE] == first_full + answer
    batch = collate([dataset[i] for i in range(4)])
    assert len(batch) == 2 and batch.images.shape == (1, 3, 48, 48)
    assert dict(batch.report.skipped) == {"unreadable_image": 1, "too_long": 1}
    assert batch.report.truncated == 1


def test_step_batches_depend_on_seed_and_epoch_only():
    def batches(epoch, start=0, world=1, rank=0, seed=7):
        return list(StepBatches(50, micro=2, accumulation=3, world=world, rank=rank, seed=seed, epoch=epoch,
                                start_step=start))

    full = batches(0)
    assert len(full) == (50 // 6) * 3 and all(len(b) == 2 for b in full)
    assert batches(0) == full and batches(1) != full and batches(0, seed=8) != full
    assert batches(0, start=3) == full[9:]  # resuming at step 3 skips exactly the consumed micro-batches
    assert len({i for b in full for i in b}) == 48  # no repeats within an epoch

    two = [batches(0, world=2, rank=r) for r in (0, 1)]
    for step in range(50 // 12):
        mine = [set(sum(two[r][step * 3:(step + 1) * 3], [])) for r in (0, 1)]
        assert not mine[0] & mine[1] and len(mine[0] | mine[1]) == 12  # the processes split each step's samples


def test_image_paths_outside_the_root_are_refused_without_looking(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "sub" / "ok.png")
    Image.new("RGB", (8, 8), "red").save(outside / "private.png")
    lines = [{"image": "sub/ok.png", "caption": "inside"},
             {"image": "sub/../sub/ok.png", "caption": "inside, in a roundabout way"},
             {"image": "../outside/private.png", "caption": "exists, outside"},
             {"image": "sub/../../outside/gone.png", "caption": "does not exist, outside"},
             {"image": str(outside / "private.png"), "caption": "absolute, exists"},
             {"image": str(outside / "gone.png"), "caption": "absolute, does not exist"},
             {"id": "l", "image": ["sub/ok.png", "../outside/private.png"], "conversations": [
                 {"from": "human", "value": "<image><image> Compare."}, {"from": "gpt", "value": "Alike."}]}]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    samples, report, _ = load_samples(data, None, "Describe.")
    assert [s.images for s in samples] == [["sub/ok.png"], ["sub/../sub/ok.png"]]
    # The same reason whether the outside file exists or not: the report tells nothing about other folders.
    assert dict(report.skipped) == {"outside_root": 5}
    assert "5 image paths outside image_root" in report.summary()

    allowed, report, _ = load_samples(data, None, "Describe.", allow_absolute_images=True)
    assert [s.images for s in allowed][2:] == [[str(outside / "private.png")]]
    assert dict(report.skipped) == {"outside_root": 3, "missing_image": 1}  # `..` is refused all the same


def test_real_world_quirks_of_llava_and_sharegpt_files(tmp_path):
    records = [{"id": "bom", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
               {"id": "roles", "conversations": [{"from": "human", "value": "q"}, {"from": "chatgpt", "value": "a"},
                                                 {"from": "human", "value": "q2"}, {"from": "Bing", "value": "b"},
                                                 {"from": "human", "value": "q3"}, {"from": "bard", "value": "c"}]},
               {"id": "string", "conversations": json.dumps([{"from": "human", "value": "q"},
                                                             {"from": "gpt", "value": "a"}])},
               {"id": "garbled", "conversations": "[{not json"},
               {"id": "dict", "conversations": {"from": "human", "value": "q"}},
               {"id": "system", "system": "You are a pirate.", "conversations": [
                   {"from": "human", "value": "q"}, {"from": "gpt", "value": "Arr."}]}]
    data = tmp_path / "sharegpt.json"
    data.write_text(json.dumps(records), encoding="utf-8-sig")  # a byte-order mark, as Windows editors write
    samples, report, _ = load_samples(data, None, "Describe.")
    assert report.total == 6 and dict(report.skipped) == {"bad_conversations": 2}
    bom, roles, string, system = samples
    assert [m["role"] for m in roles.messages] == ["user", "assistant"] * 3
    assert string.messages == bom.messages
    assert system.messages[0] == {"role": "system", "content": [{"type": "text", "text": "You are a pirate."}]}

    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records[:2]), encoding="utf-8-sig")
    assert len(load_samples(jsonl, None, "Describe.")[0]) == 2


def test_a_dialog_starts_with_the_user_and_ends_with_an_answer():
    sample = llava_sample({"image": "a.png", "conversations": [
        {"from": "gpt", "value": "Hello! Send me a picture."}, {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A cat."}, {"from": "human", "value": "<image> And this one?"}]})
    assert [m["role"] for m in sample.messages] == ["user", "assistant"]  # like LLaVA: the greeting is not trained
    assert _images(sample.messages[0]) == ["a.png"] and sample.images == ["a.png"]
    assert llava_sample({"conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "q"}]}) \
        == "no_answer"


def test_a_file_that_does_not_parse_is_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"image": "a.png", "caption": "x"},\n {"image": ]')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON \(Expecting value at line 2, column 12\)"):
        load_samples(broken, None, "Describe.")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"image": "a.png", "caption": "café"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.jsonl: not UTF-8 text"):
        load_samples(latin, None, "Describe.")


def test_a_sample_without_trained_tokens_is_a_counted_skip(model, tmp_path):
    turns = [{"role": r, "content": [{"type": "text", "text": t}]}
             for r, t in [("user", "first question"), ("assistant", "first answer"),
                          ("user", "second question " * 20), ("assistant", "")]]
    cfg = model.config.replace(prompt_append_eos=False)  # the stage-1 preset: no EOS to train on
    full = DialogDataset([Sample(turns, [])], model.tokenizer, cfg, 2048, tmp_path)[0]["dialog"]
    assert data.trained_tokens(full) == len(encode_segment(model.tokenizer, "first answer"))
    # Truncation keeps the last turn, whose answer is empty: nothing is left to learn from.
    cut = DialogDataset([Sample(turns, [])], model.tokenizer, cfg, len(full) - 3, tmp_path)
    assert cut[0] == "no_trained_tokens"
    batch = collate([cut[0]])
    assert len(batch) == 0 and dict(batch.report.skipped) == {"no_trained_tokens": 1}


def test_a_record_can_break_its_pictures_frame_on_purpose(model, tmp_path):
    """`image_markers`: the dialog's SOI and EOI swapped or left out (what the demo world's "unframed" dialogs
    train the model to treat as no picture); the answer's labels are the same tokens as in the framed dialog."""
    Image.new("RGB", (16, 16), "blue").save(tmp_path / "blue.png")
    conversations = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Blue."}]
    records = [{"image": "blue.png", "conversations": conversations, **extra}
               for extra in ({}, {"image_markers": "swapped"}, {"image_markers": "none"})]
    samples = [llava_sample(r) for r in records]
    assert [s.image_markers for s in samples] == [None, "swapped", "none"]
    assert llava_sample({**records[0], "image_markers": "sideways"}) == "bad_record"
    dataset = DialogDataset(samples, model.tokenizer, model.config, 2048, tmp_path)
    framed, swapped, bare = (dataset[i]["dialog"] for i in range(3))

    def layout(dialog):
        return [s.name if s.kind == "special" else s.kind for s in dialog.segments]

    assert layout(framed)[:5] == ["text", "SOI", "image", "EOI", "USER"]
    assert layout(swapped)[:5] == ["text", "EOI", "image", "SOI", "USER"]
    assert layout(bare)[:3] == ["text", "image", "USER"] and len(bare) == len(framed) - 2
    answer = [t for t in framed.labels() if t != IGNORE]
    assert answer and [t for t in swapped.labels() if t != IGNORE] == answer
    assert [t for t in bare.labels() if t != IGNORE] == answer

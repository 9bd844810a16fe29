"""Training runs on the tiny preset with synthetic data (solid shapes and captions naming them).

A random LLM cannot be steered by its inputs (RMSNorm before a small random lm_head caps every logit), so a
stage-1 run on it cannot lower the loss much. The module fixture therefore first makes an LLM that "knows how
to look": a short joint run on the captions, after which the adapter and vectors are replaced by fresh random
ones. Stage 1 must then rebuild the bridge with that LLM frozen, which is what stage 1 does for real.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from model.checkpoint import build_in_memory, load_model
from model.config import preset_config
from model.dialog import encode_dialog
from model.omnifusion import OmniFusion
from model.serving.engine import SamplingParams, generate
from model.vision import VisionEncoder
from model.weights import adapter_state, load_adapter_state
from training import eval as evaluate
from training import run
from training.config import build_config
from training.data import DialogDataset, collate, trained_tokens
from training.loop import train
from training.records import Sample, load_samples
from training.sampler import StepBatches
from training.trainee import Trainee, freeze_for_stage

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
SHAPES = ("circle", "square")
PROMPT = "Describe the image briefly."
FAST_SEED = 42  # TrainConfig's default: the data order of the runs below
FAST = {"num_workers": 0, "gradient_checkpointing": False, "warmup_ratio": 0.0, "caption_prompt": PROMPT,
        "save_every": 1000, "log_every": 1}


@contextlib.contextmanager
def count_vision_calls():
    calls = SimpleNamespace(n=0)
    original = VisionEncoder.forward

    def counting(self, pixels):
        calls.n += 1
        return original(self, pixels)

    VisionEncoder.forward = counting
    try:
        yield calls
    finally:
        VisionEncoder.forward = original


def make_images(root: Path) -> list[tuple[str, str]]:
    (root / "img").mkdir(parents=True, exist_ok=True)
    out = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            image = Image.new("RGB", (64, 64), "white")
            draw = ImageDraw.Draw(image)
            (draw.ellipse if shape == "circle" else draw.rectangle)([12, 12, 52, 52], fill=rgb)
            name = f"img/{colour}_{shape}.png"
            image.save(root / name)
            out.append((name, f"A {colour} {shape}."))
    return out


def all_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {f"adapter.{k}": v for k, v in load_file(folder / "adapter.safetensors").items()}
    weights |= {f"vision.{k}": v for k, v in load_file(folder / "vision.safetensors").items()}
    weights |= {f"llm.{k}": v for k, v in load_file(folder / "llm" / "model.safetensors").items()}
    return weights


def changed(before: dict, after: dict) -> set[str]:
    """Tensors whose values moved, compared in the saved dtype: a frozen part saved in bf16 was cast, not
    trained (frozen_dtype bf16), and a bf16 part trained in fp32 is compared without rounding away its update."""
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k].to(after[k].dtype), after[k])}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    images = make_images(root / "data")
    (root / "data" / "captions.jsonl").write_text("".join(json.dumps({"image": i, "caption": c}) + "\n"
                                                          for i, c in images))
    dialogs = []
    for n, (image, caption) in enumerate(images):
        colour, shape = caption[2:-1].split()
        dialogs.append({"id": f"i{n}", "image": image, "conversations": [
            {"from": "human", "value": f"<image>\n{PROMPT}"}, {"from": "gpt", "value": caption},
            {"from": "human", "value": "What colour is it?"}, {"from": "gpt", "value": colour},
            {"from": "human", "value": "And the shape?"}, {"from": "gpt", "value": shape}]})
        dialogs.append({"id": f"t{n}", "conversations": [  # text-only samples are allowed
            {"from": "human", "value": f"Name a {shape}."}, {"from": "gpt", "value": f"A {colour} {shape}."}]})
    (root / "data" / "dialogs.json").write_text(json.dumps(dialogs))

    base = root / "base"
    build_in_memory(preset_config("tiny"), device="cpu").save_pretrained(base)
    common = {**FAST, "data": str(root / "data" / "captions.jsonl"), "feature_cache": str(root / "cache"),
              "batch_size": 8, "micro_batch_size": 8}
    with count_vision_calls() as calls:
        joint = train(build_config({**common, "stage": 2, "init_from": str(base), "output_dir": str(root / "joint"),
                                    "max_steps": 60, "lr": 3e-3, "llm_lr": 3e-3, "schedule": "constant"}))
    assert calls.n == 1  # 8 images, one batch of cache_batch_size 16: CLIP ran once, to fill the cache
    # Below 0.1 the captions are predicted from the pictures; knowing only that some colour and shape come next
    # costs ~0.35 per answer token. The model first learns that prior and reads the pictures only from step ~35
    # on: a cosine schedule decaying to 0 at step 60 left it stuck on that plateau. A constant rate got past it
    # for each of 5 seeds tried (0.02 at step 60).
    assert joint.losses[-1] < 0.1, f"the joint run did not learn to read the images: {joint.losses[::10]}"
    seeing = OmniFusion.from_pretrained(root / "joint", device="cpu")
    load_adapter_state(seeing, adapter_state(build_in_memory(preset_config("tiny").replace(seed=1))), "fresh")
    seeing.save_pretrained(root / "seeing")
    return SimpleNamespace(root=root, images=images, common=common, seeing=root / "seeing")


@pytest.fixture(scope="module")
def stage1(work):
    """Stage 1 through the command line, as a maintainer runs it."""
    out = work.root / "stage1"
    args = ["--config", "training/configs/stage1.yaml", "--init_from", str(work.seeing), "--output_dir", str(out),
            "--data", work.common["data"], "--feature_cache", work.common["feature_cache"], "--batch_size", "8",
            "--micro_batch_size", "8", "--max_steps", "30", "--lr", "1e-2", "--append_eos", "true"]
    args += [f"--{k}={v}" for k, v in FAST.items()]
    with count_vision_calls() as calls, contextlib.chdir(Path(__file__).resolve().parent.parent):
        assert run.main(args) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return SimpleNamespace(out=out, losses=[float(r["loss"]) for r in rows], vision_calls=calls.n)


def test_stage1_lowers_loss_and_trains_only_adapter_and_vectors(work, stage1):
    assert len(stage1.losses) == 30
    assert sum(stage1.losses[-3:]) / 3 < 0.5 * stage1.losses[0], stage1.losses
    diff = changed(all_weights(work.seeing), all_weights(stage1.out))
    adapter = {k for k in all_weights(work.seeing) if k.startswith("adapter.")}
    assert diff == adapter  # every adapter tensor and SOI/EOI/USER/BOT moved; nothing else did
    assert {"adapter.SOI", "adapter.EOI", "adapter.USER", "adapter.BOT"} <= diff
    assert stage1.vision_calls == 0  # the cache filled by the fixture was reused: CLIP never ran
    for name in ("metrics.csv", "loss_curve.png", "train_config.yaml", "training_state.pt", "config.json"):
        assert (stage1.out / name).is_file(), name
    assert json.loads((stage1.out / "config.json").read_text())["prompt_append_eos"] is True


def test_stage2_from_stage1_trains_the_llm_never_clip(work, stage1):
    out = work.root / "stage2"
    with count_vision_calls() as calls:
        result = train(build_config({**FAST, "stage": 2, "init_from": str(stage1.out), "output_dir": str(out),
                                     "data": str(work.root / "data" / "dialogs.json"), "batch_size": 4,
                                     "micro_batch_size": 2, "max_steps": 4, "optimizer": "adafactor",
                                     "gradient_checkpointing": True, "lr": 1e-3, "llm_lr": 1e-3}))
    assert calls.n > 0  # no feature cache this time: CLIP runs on the pixels of every micro-batch with images
    before, after = all_weights(stage1.out), all_weights(out)
    diff = changed(before, after)
    assert not {k for k in diff if k.startswith("vision.")}
    assert {k for k in before if k.startswith("llm.")} <= diff  # every LLM tensor was trained
    assert result.step == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    assert (out / "loss_curve.png").is_file()


def test_eager_attention_trains_the_same_steps_and_is_not_saved(work, stage1):
    """`attention: eager` (the demo's stage 2: faster on a CPU) changes the kernel, not the arithmetic: the same
    losses as the model's own sdpa, and the checkpoint does not carry the choice to the worker."""
    cfg = {**FAST, "stage": 2, "init_from": str(stage1.out), "data": str(work.root / "data" / "dialogs.json"),
           "batch_size": 4, "micro_batch_size": 2, "max_steps": 3, "lr": 1e-3, "llm_lr": 1e-3}
    losses, kernels = {}, {}
    for attention in ("auto", "eager"):
        model = OmniFusion.from_pretrained(stage1.out, device="cpu", dtype=torch.float32)
        out = work.root / f"attention-{attention}"
        losses[attention] = train(build_config({**cfg, "output_dir": str(out), "attention": attention}),
                                  model=model).losses
        kernels[attention] = model.llm.config._attn_implementation
        assert "eager" not in (out / "llm" / "config.json").read_text()
    assert kernels == {"auto": "sdpa", "eager": "eager"}
    assert losses["eager"] == pytest.approx(losses["auto"], rel=1e-4)


def test_loss_counts_only_answer_tokens(work):
    model = OmniFusion.from_pretrained(work.seeing, device="cpu").eval()
    trainee = Trainee(model, cached_features=False).eval()

    def loss(question: str, answer: str, follow_up: str) -> float:
        messages = [{"role": "user", "content": [{"type": "image", "key": work.images[0][0]},
                                                 {"type": "text", "text": question}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                    {"role": "user", "content": [{"type": "text", "text": follow_up}]}]
        dataset = DialogDataset([Sample(messages, [work.images[0][0]])], model.tokenizer, model.config, 2048,
                                work.root / "data")
        with torch.no_grad():
            return trainee(collate([dataset[0]])).item()

    reference = loss(PROMPT, "A red circle.", "Thanks!")
    # The trailing user turn comes after every answer token: if its tokens were targets, the loss would move.
    assert loss(PROMPT, "A red circle.", "Something else entirely, and longer.") == reference
    assert loss(PROMPT, "A blue square.", "Thanks!") != reference


def test_the_loss_on_answer_positions_only_is_the_models_own_loss(work):
    """Trainee computes logits only where a token is trained; the mean must be what the LLM's own loss (logits at
    every position, ignored ones masked) gives for the same batch."""
    model = OmniFusion.from_pretrained(work.seeing, device="cpu").eval()
    trainee = Trainee(model, cached_features=False).eval()
    dialogs = [[{"role": "user", "content": [{"type": "image", "key": work.images[i][0]},
                                             {"type": "text", "text": PROMPT}]},
                {"role": "assistant", "content": [{"type": "text", "text": work.images[i][1]}]},
                {"role": "user", "content": [{"type": "text", "text": "And the shape?" * (i + 1)}]},
                {"role": "assistant", "content": [{"type": "text", "text": work.images[i][1].split()[-1]}]}]
               for i in range(2)]
    dataset = DialogDataset([Sample(d, [d[0]["content"][0]["key"]]) for d in dialogs], model.tokenizer,
                            model.config, 2048, work.root / "data")
    batch = collate([dataset[0], dataset[1]])
    with torch.no_grad():
        ours = trainee(batch).item()
        features = model.vision(batch.images)
        embeds, labels, used = [], [], 0
        for dialog in batch.dialogs:
            e, lab = model.embed_dialog(dialog, model.adapter(features[used:used + len(dialog.image_keys)]))
            used += len(dialog.image_keys)
            embeds.append(e)
            labels.append(lab)
        padded = model.pad_batch(embeds, labels, left=False)
        reference = model.llm(**padded, use_cache=False).loss.item()  # HF: logits everywhere, IGNORE masked
    assert batch.trained_tokens > 4 and ours == pytest.approx(reference, rel=1e-5)


def test_every_answer_token_weighs_the_same_however_the_step_is_cut(work):
    """One micro-batch of 4 dialogs or 4 micro-batches of 1: the same loss and gradient (as litgpt and the HF
    Trainer do). A mean per micro-batch would weigh a one-answer dialog as much as a three-answer one."""
    # Text only: the adapter's dropout would otherwise draw other masks for other micro-batch shapes.
    dialogs = [{"conversations": [{"from": "human", "value": f"Name a {shape}."}, {"from": "gpt", "value": caption}]
                + ([{"from": "human", "value": "Its colour?"}, {"from": "gpt", "value": caption.split()[1]},
                    {"from": "human", "value": "Its shape?"}, {"from": "gpt", "value": shape}] if n % 2 else [])}
               for n, (_, caption) in enumerate(work.images) for shape in [caption.split()[2].rstrip(".")]]
    data = work.root / "data" / "text_dialogs.json"
    data.write_text(json.dumps(dialogs))
    samples = load_samples(data, None, PROMPT)[0]
    model = OmniFusion.from_pretrained(work.seeing, device="cpu")
    first_step = next(iter(StepBatches(len(samples), 4, 1, 1, 0, seed=FAST_SEED, epoch=0)))
    dataset = DialogDataset(samples, model.tokenizer, model.config.replace(prompt_append_eos=True), 2048,
                            work.root / "data")
    counts = [trained_tokens(dataset[i]["dialog"]) for i in first_step]
    assert len(set(counts)) > 1, counts  # the test means something only if the answers differ in length
    cfg = {**FAST, "stage": 2, "init_from": str(work.seeing), "data": str(data), "batch_size": 4, "max_steps": 1,
           "seed": FAST_SEED}
    runs = {}
    for micro in (4, 1):
        out = work.root / f"weighting{micro}"
        result = train(build_config({**cfg, "micro_batch_size": micro, "output_dir": str(out)}))
        runs[micro] = (result.losses[0], float(next(csv.DictReader((out / "metrics.csv").open()))["grad_norm"]))
    assert runs[1] == pytest.approx(runs[4], rel=1e-5)
    # A micro-batch left without a trained token adds nothing to the step: zero, never NaN.
    trainee = Trainee(model, cached_features=False)
    assert trainee(collate(["no_trained_tokens"]), num_items=7).item() == 0.0


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_replays_the_uninterrupted_run(work, stage1, stage):
    cfg = {**FAST, "stage": stage, "init_from": str(stage1.out), "data": str(work.root / "data" / "dialogs.json"),
           "batch_size": 4, "micro_batch_size": 2, "max_steps": 6, "num_workers": 1, "lr": 1e-3, "llm_lr": 1e-3,
           "warmup_ratio": 0.2}  # warmup + cosine: the schedule must be restored too
    if stage == 1:  # a frozen bf16 LLM (a GPU's default) must not round the trained fp32 weights on resume
        cfg |= {"frozen_dtype": "bf16", "feature_cache": work.common["feature_cache"]}
    straight = train(build_config({**cfg, "output_dir": str(work.root / f"straight{stage}")}))
    split = {**cfg, "output_dir": str(work.root / f"split{stage}")}
    first = train(build_config({**split, "stop_at": 3}))
    assert first.step == 3 and first.checkpoint.name == "step-000003"
    resumed = train(build_config({**split, "resume": str(first.checkpoint)}))
    assert resumed.step == 6
    assert first.losses + resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    a, b = all_weights(work.root / f"straight{stage}"), all_weights(work.root / f"split{stage}")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    steps = [int(r["step"]) for r in csv.DictReader((work.root / f"split{stage}" / "metrics.csv").open())]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_checkpoint_loads_in_the_worker_loader_and_generates(work, stage1):
    model = load_model(path=stage1.out, device="cpu")  # what model.worker calls with MODEL_PATH
    embeds = []
    for image_path, _ in work.images:
        messages = [{"role": "user", "content": [{"type": "image", "key": "i"}, {"type": "text", "text": PROMPT}]}]
        dialog = encode_dialog(messages, model.tokenizer, model.config)
        image = Image.open(work.root / "data" / image_path).convert("RGB")
        with torch.no_grad():
            embeds.append(model.embed_dialog(dialog, model.encode_images([image]))[0])
    outputs = generate(model, embeds, SamplingParams(max_new_tokens=24))
    right = sum(text.strip() == caption for (text, _, _), (_, caption) in zip(outputs, work.images, strict=True))
    assert right >= 6, [o[0] for o in outputs]  # it learned the captions from the pictures ...
    assert sum(finish == "stop" for _, finish, _ in outputs) >= 6  # ... and to stop (append_eos)


def test_bad_data_is_skipped_counted_and_reported(work, caplog):
    data = work.root / "data"
    (data / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    lines = [json.dumps({"image": i, "caption": c}) for i, c in work.images]
    lines += ['{"image": "img/red_circle.png", "caption": ',  # broken JSON line
              json.dumps({"image": "img/missing.png", "caption": "A ghost."}),
              json.dumps({"image": "img/corrupt.png", "caption": "Broken."}),
              json.dumps({"id": "e", "conversations": []}),
              json.dumps({"image": "img/red_circle.png", "caption": "word " * 3000}),  # longer than the context
              json.dumps({"image": "../../../../../../etc/hostname", "caption": "Not yours."})]
    (data / "bad.jsonl").write_text("\n".join(lines) + "\n")
    caplog.set_level("INFO")
    result = train(build_config({**FAST, "init_from": str(work.seeing), "output_dir": str(work.root / "bad"),
                                 "data": str(data / "bad.jsonl"), "batch_size": 10, "micro_batch_size": 5,
                                 "max_steps": 1, "max_length": 256}))
    assert result.step == 1
    assert result.report.total == 14
    assert dict(result.report.skipped) == {"broken_json": 1, "missing_image": 1, "empty_conversation": 1,
                                           "unreadable_image": 1, "too_long": 1, "outside_root": 1}
    assert "1 images that could not be decoded" in caplog.text and "1 image files that do not exist" in caplog.text


def test_eval_of_the_trained_model_caption_loss_and_gqa_accuracy(work, stage1, capsys):
    out = work.root / "eval"
    assert evaluate.main(["run", "--task", "captions", "--model", str(stage1.out), "--annotations",
                          work.common["data"], "--out", str(out / "captions.json")]) == 0
    captions = json.loads((out / "captions.json").read_text())
    assert captions["counts"]["samples"] == 8
    assert captions["metrics"]["loss"] < 0.5 * stage1.losses[0]
    assert "perplexity" in capsys.readouterr().out
    # The same pictures as GQA-layout questions: exact match after GQA's normalisation (lower case, no final ".").
    questions = {f"q{n}": {"imageId": i.removesuffix(".png"), "question": PROMPT, "answer": c.rstrip(".").lower(),
                           "isBalanced": True, "types": {"structural": "query"}} for n, (i, c) in enumerate(work.images)}
    (work.root / "data" / "gqa.json").write_text(json.dumps(questions))
    assert evaluate.main(["run", "--task", "gqa", "--model", str(stage1.out), "--questions",
                          str(work.root / "data" / "gqa.json"), "--image-root", str(work.root / "data"),
                          "--image-pattern", "{image_id}.png", "--prompt-suffix", "", "--max-new-tokens", "24",
                          "--out", str(out / "gqa.json")]) == 0
    gqa = json.loads((out / "gqa.json").read_text())
    assert gqa["scored"] == 8 and gqa["metrics"]["accuracy"] >= 0.75


@pytest.mark.parametrize("stage", [1, 2])
def test_gradient_checkpointing_recomputes_the_llm_in_both_stages(stage):
    model = build_in_memory(preset_config("tiny"), device="cpu")
    runs = {}
    for enabled in (False, True):
        model.llm.gradient_checkpointing_disable()
        freeze_for_stage(model, stage, enabled)
        calls: list[int] = []
        hook = model.llm.model.layers[0].self_attn.register_forward_hook(lambda *_, c=calls: c.append(1))
        embeds = torch.randn(1, 12, model.config.llm_hidden_size, requires_grad=True)
        model.llm(inputs_embeds=embeds, use_cache=False).logits.sum().backward()
        hook.remove()
        runs[enabled] = len(calls)
        assert embeds.grad.abs().sum() > 0  # gradients reach the spliced inputs even with the LLM frozen
    assert runs == {False: 1, True: 2}  # with checkpointing the layer runs again in backward
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.llm.parameters()) == (stage == 2)

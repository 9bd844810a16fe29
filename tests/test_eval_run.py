"""The model side of evaluation on the tiny random model: batched answers through the serving engine, batched
candidate likelihoods, and `training/eval.py run` end to end (predictions kept as they come, --resume)."""

from __future__ import annotations

import json

import pytest
import torch

from model.checkpoint import load_model
from model.dialog import encode_dialog
from model.serving.engine import BatchGenerator, SamplingParams, generate
from tests.model_helpers import drawn_image
from training import eval as cli
from training.evaluation.runner import Prompt, answer_all, embed, score_candidates
from training.evaluation.visdial import ranks_from_scores


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", device="cpu")


def test_answer_all_equals_one_batch_of_generate(model, capsys):
    red, blue = drawn_image((200, 30, 30)), drawn_image((30, 30, 200), shape="square")
    prompts = [Prompt("What colour is it?", [red]), Prompt("And this one, what shape is it please?", [blue]),
               Prompt("Hello"), Prompt("Two pictures: which is red?", [blue, red]), Prompt("Why?", [red])]
    finished: list[int] = []
    params = SamplingParams(max_new_tokens=7)
    answers = answer_all(model, prompts, params, batch_size=2, on_answer=lambda i, _: finished.append(i))
    reference = [text.strip() for text, _, _ in generate(model, embed(model, prompts, 7), params)]
    assert answers == reference  # batch of 2 with rows joining as others finish == all five at once
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert "answering" in capsys.readouterr().err  # the tqdm progress bar


def test_a_long_answer_does_not_hold_up_the_others(model, monkeypatch):
    steps = []
    original = BatchGenerator.step
    monkeypatch.setattr(BatchGenerator, "step", lambda self: steps.append(len(self)) or original(self))
    prompts = [Prompt(f"Question {i}?") for i in range(6)]
    long_first = [SamplingParams(max_new_tokens=12, stop=())] + [SamplingParams(max_new_tokens=2, stop=())] * 5
    answers = answer_all(model, prompts, long_first, batch_size=2, progress=False)
    assert len(answers) == 6
    # The five short ones pass through the second slot while the long one decodes (a short one is one token from
    # its prefill, one from a step): 11 steps, the first 5 at full width. Refilling only once the whole batch
    # is done would take 13 steps, the long answer holding the second slot empty for 10 of them.
    assert steps == [2] * 5 + [1] * 6


def full_sequence_log_likelihood(model, prompt: Prompt, candidate: str) -> float:
    messages = prompt.messages() + [{"role": "assistant", "content": [{"type": "text", "text": candidate}]}]
    dialog = encode_dialog(messages, model.tokenizer, model.config)
    embeds, labels = model.embed_dialog(dialog, model.encode_images(list(prompt.images)))
    with torch.no_grad():
        logp = torch.log_softmax(model.llm(inputs_embeds=embeds[None]).logits[0, :-1].float(), -1)
    targets = labels[1:]
    trained = targets != -100
    return float(logp[trained].gather(-1, targets[trained][:, None]).sum())


def test_score_candidates_equals_scoring_each_whole_sequence(model):
    prompt = Prompt("What is on the picture?", [drawn_image()])
    candidates = ["a red circle", "no", "two blue squares on a table", "yes", ""]
    scores = score_candidates(model, prompt, candidates, batch_size=2)
    for candidate, value in zip(candidates[:-1], scores, strict=False):
        assert value == pytest.approx(full_sequence_log_likelihood(model, prompt, candidate), abs=1e-3)
    assert scores[-1] == float("-inf")  # nothing to score is not a free 0
    assert score_candidates(model, prompt, candidates, batch_size=64) == pytest.approx(scores, abs=1e-4)


@pytest.fixture
def gqa_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, colour in (("n1", (200, 30, 30)), ("n2", (30, 200, 30))):
        drawn_image(colour).save(images / f"{name}.jpg")
    questions = {f"q{i}": {"imageId": image, "question": question, "answer": "red", "isBalanced": True,
                           "types": {"structural": "query", "semantic": "attr"}}
                 for i, (image, question) in enumerate([("n1", "What colour?"), ("n2", "What colour is it?"),
                                                        ("n1", "Which colour is the shape?")])}
    path = tmp_path / "testdev_balanced_questions.json"
    path.write_text(json.dumps(questions))
    return path, images


def run(*args) -> int:
    return cli.main(["run", "--preset", "tiny", "--device", "cpu", *args])


def test_run_generates_keeps_predictions_and_scores_like_score_mode(tmp_path, gqa_files, model):
    questions, images = gqa_files
    out = tmp_path / "gqa.json"
    assert run("--task", "gqa", "--questions", str(questions), "--image-root", str(images), "--out", str(out),
               "--batch-size", "2", "--max-new-tokens", "4") == 0
    result = json.loads(out.read_text())
    lines = [json.loads(line) for line in out.with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert sorted(r["questionId"] for r in lines) == ["q0", "q1", "q2"] and result["scored"] == 3
    expected = answer_all(model, [Prompt("What colour?\nAnswer the question using a single word or phrase.",
                                         [images / "n1.jpg"])], SamplingParams(max_new_tokens=4), progress=False)
    assert next(r["answer"] for r in lines if r["questionId"] == "q0") == expected[0]
    rescored = tmp_path / "rescored.json"
    assert cli.main(["score", "--task", "gqa", "--questions", str(questions), "--predictions",
                     str(out.with_suffix(".predictions.jsonl")), "--out", str(rescored)]) == 0
    assert json.loads(rescored.read_text())["metrics"] == result["metrics"]
    assert "| accuracy |" in out.with_suffix(".md").read_text()


def test_run_resumes_and_never_overwrites_predictions(tmp_path, gqa_files, capsys):
    questions, images = gqa_files
    base = ["--task", "gqa", "--questions", str(questions), "--image-root", str(images), "--out",
            str(tmp_path / "gqa.json"), "--max-new-tokens", "4"]
    predictions = tmp_path / "gqa.predictions.jsonl"
    assert run(*base, "--limit", "2") == 0
    first = predictions.read_text()
    assert len(first.splitlines()) == 2
    assert run(*base) == 2
    assert "--resume" in capsys.readouterr().err and predictions.read_text() == first
    assert run(*base, "--resume") == 0
    assert predictions.read_text().startswith(first) and len(predictions.read_text().splitlines()) == 3


def test_run_checks_every_image_before_loading_the_model(tmp_path, gqa_files, capsys):
    questions, images = gqa_files
    (images / "n2.jpg").unlink()
    out = tmp_path / "gqa.json"
    assert run("--task", "gqa", "--questions", str(questions), "--image-root", str(images), "--out", str(out)) == 2
    assert "1 image files do not exist" in capsys.readouterr().err
    assert not out.with_suffix(".predictions.jsonl").exists()
    assert run("--task", "gqa", "--questions", str(questions), "--out", str(out)) == 2
    assert "give --image-root" in capsys.readouterr().err
    (images / "n2.jpg").write_bytes(b"not a picture")
    assert run("--task", "gqa", "--questions", str(questions), "--image-root", str(images), "--out", str(out)) == 2
    assert "n2.jpg" in capsys.readouterr().err


def test_visdial_run_ranks_candidates_by_likelihood(tmp_path, model):
    drawn_image().save(tmp_path / "VisualDialog_val2018_000000000011.jpg")
    data = tmp_path / "visdial_1.0_val.json"
    data.write_text(json.dumps({"split": "val2018", "data": {
        "questions": ["is it red", "what shape"], "answers": ["yes", "no", "a circle", "a square"],
        "dialogs": [{"image_id": 11, "caption": "a red circle", "dialog": [
            {"question": 0, "answer": 0, "answer_options": [0, 1, 2, 3], "gt_index": 0},
            {"question": 1, "answer": 2, "answer_options": [3, 2, 1, 0], "gt_index": 1}]}]}}))
    dense = tmp_path / "dense.json"
    dense.write_text(json.dumps([{"image_id": 11, "round_id": 2, "gt_relevance": [0.5, 1, 0, 0]}]))
    out = tmp_path / "visdial.json"
    assert run("--task", "visdial", "--annotations", str(data), "--dense-annotations", str(dense),
               "--image-root", str(tmp_path), "--out", str(out)) == 0
    lines = [json.loads(line) for line in out.with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert [(r["image_id"], r["round_id"]) for r in lines] == [(11, 1), (11, 2)]
    image = tmp_path / "VisualDialog_val2018_000000000011.jpg"
    second_round = Prompt([{"role": "user", "content": [{"type": "image", "key": "0"},
                                                        {"type": "text", "text": "a red circle.\nis it red?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "yes"}]},
                           {"role": "user", "content": [{"type": "text", "text": "what shape?"}]}], [image])
    scores = score_candidates(model, second_round, ["a square", "a circle", "no", "yes"])
    assert lines[1]["ranks"] == ranks_from_scores(scores)
    result = json.loads(out.read_text())
    assert set(result["metrics"]) >= {"ndcg", "mrr", "r@1", "r@5", "r@10", "mean_rank"}


def test_captions_task_reports_the_held_out_loss(tmp_path, capsys):
    drawn_image().save(tmp_path / "red.png")
    captions = tmp_path / "val_captions.jsonl"
    captions.write_text(json.dumps({"image": "red.png", "caption": "A red circle."}) + "\n")
    out = tmp_path / "captions.json"
    assert run("--task", "captions", "--annotations", str(captions), "--out", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["loss"] > 0 and result["counts"]["samples"] == 1
    gone = tmp_path / "gone.jsonl"
    gone.write_text(json.dumps({"image": "missing.png", "caption": "A red circle."}) + "\n")
    assert run("--task", "captions", "--annotations", str(gone), "--out", str(out)) == 2
    assert "0 captions could be evaluated" in capsys.readouterr().err

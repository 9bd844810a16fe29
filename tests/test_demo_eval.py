"""The demo world as a task of training/eval.py: scoring a predictions file, and a run with a model."""

import json

import pytest

from training.demo_world import language as L
from training.demo_world.build import WorldSizes, build
from training.eval import main as eval_main


def right_answer(expect: dict) -> str:
    kind, value = expect["kind"], expect["value"]
    return {"colour": lambda: f"It is {value}.", "shape": lambda: f"It is a {value}.",
            "count": lambda: f"There are {value} of them." if value else "There are no shapes.",
            "yesno": lambda: "Yes." if value else "No.", "position": lambda: f"It is {L.EN_POSITIONS[value]}.",
            "picture": lambda: f"The {L.EN_ORDINALS[value]} one.",
            "caption": lambda: L.describe([tuple(g) for g in value], "en"), "text": lambda: value}[kind]()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("world"), WorldSizes(vision=2, stage1=1, stage2=2, eval=36, other=6,
                                                              text=2, seed=3), processes=1)


def test_scoring_a_predictions_file_per_skill(world, tmp_path):
    items = [json.loads(line) for line in (world / "eval.jsonl").read_text().splitlines()]
    wrong = {i["id"] for i in items if i["skill"] == "count"}
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps({"id": i["id"], "answer": "Maybe." if i["id"] in wrong else
                                               right_answer(i["expect"])}) + "\n" for i in items))
    out = tmp_path / "scores.json"
    assert eval_main(["score", "--task", "demo", "--predictions", str(predictions), "--questions",
                      str(world / "eval.jsonl"), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["count"] == 0.0 and metrics["colour"] == metrics["position"] == metrics["two_photos"] == 1.0
    assert metrics["all"] == pytest.approx(1 - len(wrong) / len(items))


def test_a_prediction_missing_fails_loudly(world, tmp_path, capsys):
    items = [json.loads(line) for line in (world / "eval.jsonl").read_text().splitlines()]
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"id": items[0]["id"], "answer": "Yes."}) + "\n")
    assert eval_main(["score", "--task", "demo", "--predictions", str(predictions), "--questions",
                      str(world / "eval.jsonl")]) == 2
    assert "no prediction" in capsys.readouterr().err.lower()


@pytest.mark.slow
def test_run_answers_every_question_with_a_model(world, tmp_path):
    from model.checkpoint import load_model

    load_model("tiny", device="cpu").save_pretrained(tmp_path / "tiny")
    out = tmp_path / "scores.json"
    assert eval_main(["run", "--task", "demo", "--model", str(tmp_path / "tiny"), "--questions",
                      str(world / "eval.jsonl"), "--annotations", str(world / "eval_other.jsonl"),
                      "--image-root", str(world), "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["counts"]["questions"] == 36 + 6
    assert set(result["metrics"]) >= {"colour", "shape", "count", "exists", "position", "two_photos", "other_colour"}

"""POPE, ScienceQA, GQA and VisDial scorers: vectors worked out from the scripts they follow (LLaVA's
eval_pope.py, eval_science_qa.py, convert_gqa_for_eval.py + GQA's eval.py, the VisDial starter's metrics.py),
then small files in each official layout through `training/eval.py score`."""

from __future__ import annotations

import json
import math

import pytest

from training import eval as cli
from training.evaluation.pope import parse_yes_no, split_metrics
from training.evaluation.scienceqa import is_correct, parse_letter
from training.evaluation.visdial import ndcg, ranks_from_scores


def write(path, data) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def jsonl(path, records) -> str:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


def score(tmp_path, *args) -> dict:
    out = tmp_path / "scores.json"
    assert cli.main(["score", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize(("text", "parsed"), [
    ("Yes", "yes"), ("Yes.", "yes"), ("yes, there is a dog.", "yes"), ("No", "no"), ("no.", "no"),
    ("No, there is no dog.", "no"), ("There is not a dog in the image", "no"),
    ("Yes, but it is not clear.", "no"),  # "not" in the first sentence
    ("Yes. No, not really.", "yes"),  # only the first sentence counts
    ("NO", "yes"), ("Nope", "yes"), ("no\n", "yes"),  # exact words, split on single spaces: as LLaVA's script
])
def test_pope_parsing(text, parsed):
    assert parse_yes_no(text) == parsed


def test_pope_metrics_from_counts():
    pairs = [("yes", "yes")] * 3 + [("yes", "no")] + [("no", "no")] * 4 + [("no", "yes")] * 2  # TP3 FP1 TN4 FN2
    m = split_metrics(pairs)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 4, 2)
    assert m["accuracy"] == pytest.approx(0.7) and m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6) and m["yes_ratio"] == pytest.approx(0.4)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert split_metrics([("no", "yes"), ("no", "no")])["precision"] == 0.0  # never "yes": 0, not a crash


def test_pope_layout_per_split(tmp_path, capsys):
    def split_file(name, labels):
        return jsonl(tmp_path / f"coco_pope_{name}.json", [
            {"question_id": i + 1, "image": f"COCO_val2014_{i:012d}.jpg", "text": "Is there a dog in the image?",
             "label": label} for i, label in enumerate(labels)])

    random_file, adversarial = split_file("random", ["yes", "no"]), split_file("adversarial", ["yes", "no"])
    preds = jsonl(tmp_path / "answers.jsonl", [
        {"question_id": 1, "category": "random", "text": "Yes, there is."},
        {"question_id": 2, "category": "random", "text": "No."},
        {"question_id": 1, "category": "adversarial", "text": "Yes."},
        {"question_id": 2, "category": "adversarial", "text": "Yes, a dog."}])
    result = score(tmp_path, "--task", "pope", "--annotations", random_file, adversarial, "--predictions", preds)
    assert result["breakdown"]["split"]["random"]["accuracy"] == 1.0
    assert result["breakdown"]["split"]["adversarial"] == pytest.approx(
        {"accuracy": 0.5, "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "yes_ratio": 1.0})
    assert result["metrics"]["accuracy"] == pytest.approx(0.75) and result["metrics"]["f1"] == pytest.approx(5 / 6)
    assert result["counts"]["adversarial_fp"] == 1
    assert "| adversarial | 0.5000 | 0.5000 | 1.0000 |" in (tmp_path / "scores.md").read_text()
    # Question ids restart per split: without `category` and with two splits, which one is meant is unknown.
    bare = jsonl(tmp_path / "bare.jsonl", [{"question_id": 1, "text": "Yes"}])
    assert cli.main(["score", "--task", "pope", "--annotations", random_file, adversarial, "--predictions", bare]) == 2
    assert "no 'category'" in capsys.readouterr().err
    one = score(tmp_path, "--task", "pope", "--annotations", random_file, "--predictions", bare, "--partial")
    assert one["scored"] == 1
    bad = jsonl(tmp_path / "coco_pope_bad.json", [{"question_id": 1, "image": "x.jpg", "text": "?", "label": "maybe"}])
    assert cli.main(["score", "--task", "pope", "--annotations", bad, "--predictions", bare]) == 2
    assert "neither 'yes' nor 'no'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "letter"), [
    ("A", "A"), ("B. blue", "B"), ("The answer is C.", "C"), ("I think the answer is D. Yes.", "FAILED"),
    ("The answer is C. The answer is D.", "FAILED"),  # two findings: neither counts
    ("A.", "FAILED"), ("a", "FAILED"), (" A", "FAILED"), ("blue", "FAILED"),
])
def test_scienceqa_letter_parsing(text, letter):
    assert parse_letter(text) == letter


def test_scienceqa_letter_past_the_choices_is_wrong():
    assert is_correct("C", 3, 2) and not is_correct("D", 3, 2) and not is_correct("E", 3, 4)


def test_scienceqa_layout(tmp_path):
    problems = {
        "1": {"question": "Which is a mammal?", "choices": ["frog", "dog"], "answer": 1, "hint": "",
              "image": None, "subject": "natural science"},
        "2": {"question": "Which colour?", "choices": ["red", "blue", "green"], "answer": 0, "hint": "Look.",
              "image": "image.png", "subject": "natural science"},
        "3": {"question": "Which word?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png",
              "subject": "language science"},
        "9": {"question": "Not in the split", "choices": ["a", "b"], "answer": 0, "hint": "", "image": None}}
    annotations = write(tmp_path / "problems.json", problems)
    write(tmp_path / "pid_splits.json", {"test": ["1", "2", "3"], "val": ["9"]})
    preds = jsonl(tmp_path / "sqa.jsonl", [{"question_id": "1", "text": "B"}, {"question_id": "2", "text": "A. red"},
                                           {"question_id": "3", "text": "The answer is B."}])
    result = score(tmp_path, "--task", "scienceqa", "--annotations", annotations, "--predictions", preds)
    assert result["metrics"] == pytest.approx({"accuracy": 2 / 3, "img_accuracy": 0.5})
    assert result["counts"]["with_image"] == 2
    assert result["breakdown"]["subject"] == pytest.approx({"language science": 0.0, "natural science": 1.0})


def test_gqa_layout_balanced_questions_exact_match(tmp_path):
    questions = write(tmp_path / "testdev_balanced_questions.json", {
        "201": {"imageId": "n1", "question": "Is it red?", "answer": "yes", "isBalanced": True,
                "types": {"structural": "verify", "semantic": "attr"}},
        "202": {"imageId": "n1", "question": "What animal?", "answer": "cat", "isBalanced": True,
                "types": {"structural": "query", "semantic": "cat"}},
        "203": {"imageId": "n2", "question": "Which side?", "answer": "left", "isBalanced": True,
                "types": {"structural": "query", "semantic": "rel"}},
        "204": {"imageId": "n2", "question": "Unbalanced", "answer": "no", "isBalanced": False,
                "types": {"structural": "verify", "semantic": "attr"}}})
    # The official predictions layout; "Yes." -> "yes" (convert_gqa_for_eval.py), "The cat" is not "cat".
    preds = write(tmp_path / "predictions.json", [{"questionId": "201", "prediction": "Yes."},
                                                  {"questionId": "202", "prediction": "The cat"},
                                                  {"questionId": "203", "prediction": "LEFT"}])
    result = score(tmp_path, "--task", "gqa", "--questions", questions, "--predictions", preds)
    assert result["metrics"]["accuracy"] == pytest.approx(2 / 3) and result["scored"] == 3
    assert result["breakdown"]["answer_type"] == pytest.approx({"binary": 1.0, "open": 0.5})


def test_visdial_metric_vectors():
    assert ranks_from_scores([1.0, 2.0, 2.0, 0.5]) == [3, 1, 2, 4]  # a tie keeps the options' order
    # Two relevant options (k = 2): predicted top 2 are options 1, 0; the best top 2 are 0, 1.
    expected = (0.5 + 1 / math.log2(3)) / (1 + 0.5 / math.log2(3))
    assert ndcg([2, 1, 3, 4], [1.0, 0.5, 0.0, 0.0]) == pytest.approx(expected)
    assert ndcg([1, 2, 3, 4], [1.0, 0.5, 0.0, 0.0]) == pytest.approx(1.0)
    assert ndcg([1, 2, 3, 4], [0.0] * 4) is None


def visdial_files(tmp_path):
    answers = ["yes", "no", "two", "a red one"]
    dialogs = [{"image_id": 11, "caption": "a dog on grass", "dialog": [
        {"question": 0, "answer": 0, "answer_options": [0, 1, 2, 3], "gt_index": 0},
        {"question": 1, "answer": 2, "answer_options": [1, 2, 3, 0], "gt_index": 1}]},
        {"image_id": 12, "caption": "a car", "dialog": [
            {"question": 2, "answer": 3, "answer_options": [3, 2, 1, 0], "gt_index": 0}]}]
    data = write(tmp_path / "visdial_1.0_val.json", {"version": "1.0", "split": "val2018", "data": {
        "questions": ["is it a dog", "how many", "what colour"], "answers": answers, "dialogs": dialogs}})
    dense = write(tmp_path / "dense.json", [{"image_id": 11, "round_id": 2, "gt_relevance": [0, 1, 0.5, 0]},
                                            {"image_id": 12, "round_id": 1, "gt_relevance": [1, 0, 0, 0]}])
    return data, dense


def test_visdial_layout_ranks_submission(tmp_path, capsys):
    data, dense = visdial_files(tmp_path)
    preds = write(tmp_path / "ranks.json", [
        {"image_id": 11, "round_id": 1, "ranks": [1, 2, 3, 4]},  # ground truth ranked 1
        {"image_id": 11, "round_id": 2, "ranks": [1, 3, 2, 4]},  # ground truth (option 1) ranked 3
        {"image_id": 12, "round_id": 1, "scores": [0.1, 0.9, 0.5, 0.3]}])  # ground truth (option 0) ranked 4
    result = score(tmp_path, "--task", "visdial", "--annotations", data, "--dense-annotations", dense,
                   "--predictions", preds)
    m = result["metrics"]
    assert m["r@1"] == pytest.approx(1 / 3) and m["r@5"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3) and m["mean_rank"] == pytest.approx(8 / 3)
    round2 = (0 + 0.5 / math.log2(3)) / (1 + 0.5 / math.log2(3))  # predicted top 2: options 0 (0), 2 (0.5)
    assert m["ndcg"] == pytest.approx((round2 + 0.0) / 2)
    assert result["counts"]["dense_rounds"] == 2
    table = (tmp_path / "scores.md").read_text()
    assert "| ndcg |" in table and "| 0.2591 |" in table  # the seed article's figure beside ours
    bad = write(tmp_path / "bad.json", [{"image_id": 11, "round_id": 1, "ranks": [1, 1, 2, 3]}])
    assert cli.main(["score", "--task", "visdial", "--annotations", data, "--predictions", bad, "--partial"]) == 2
    assert "permutation" in capsys.readouterr().err

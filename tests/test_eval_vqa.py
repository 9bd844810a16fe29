"""VQA accuracy: vectors worked out by hand from the official scripts (vqaEval.py, EvalAI's answer processor,
m4c_evaluator.py), then the four datasets' official file layouts through `training/eval.py score`."""

from __future__ import annotations

import json

import pytest

from training import eval as cli
from training.evaluation.vqa import accuracy
from training.evaluation.vqa_text import (
    evalai_process,
    process_digit_article,
    process_punctuation,
    vizwiz_prepare,
)


def answers(*groups: tuple[str, int]) -> list[str]:
    """("3", 7), ("2", 3) -> ten annotator answers."""
    out = [a for a, n in groups for _ in range(n)]
    assert len(out) == 10
    return out


# (prediction, annotators' answers, official, evalai, m4c)
VECTORS = [
    # All ten agree: the official script compares the raw (stripped) strings, so case and "." count.
    ("Yes.", answers(("yes", 10)), 0.0, 1.0, 1.0),
    ("Yes", answers(("yes", 10)), 0.0, 1.0, 1.0),
    ("yes", answers(("yes", 10)), 1.0, 1.0, 1.0),
    (" yes\n", answers(("yes", 10)), 1.0, 1.0, 1.0),
    ("a dog", answers(("dog", 10)), 0.0, 1.0, 1.0),
    # They disagree: both sides are processed (punctuation, lower case, numbers, articles, contractions).
    ("Yes.", answers(("yes", 9), ("no", 1)), 1.0, 1.0, 1.0),
    ("a dog", answers(("dog", 5), ("cat", 5)), 1.0, 1.0, 1.0),
    # A number given by 1, 2, 3 or 4 of the 10: min(matches among the other 9 / 3, 1), averaged.
    ("2", answers(("2", 1), ("3", 9)), 0.3, 0.3, 0.3),
    ("2", answers(("2", 2), ("3", 8)), 0.6, 0.6, 0.6),
    ("2", answers(("2", 3), ("3", 7)), 0.9, 0.9, 0.9),
    ("2", answers(("2", 4), ("3", 6)), 1.0, 1.0, 1.0),
    ("2", answers(("3", 10)), 0.0, 0.0, 0.0),
    # Number words become digits, "none" included; only when processing runs (officially: disagreement).
    ("two", answers(("2", 3), ("3", 7)), 0.9, 0.9, 0.9),
    ("Two", answers(("2", 3), ("3", 7)), 0.9, 0.9, 0.9),
    ("none", answers(("0", 5), ("1", 5)), 1.0, 1.0, 1.0),
    ("none", answers(("0", 10)), 0.0, 1.0, 1.0),
    ("twelve", answers(("12", 5), ("1", 5)), 0.0, 0.0, 0.0),  # the map stops at ten
    # Contractions without the apostrophe get it back.
    ("dont", answers(("don't", 4), ("no", 6)), 1.0, 1.0, 1.0),
    # A comma between digits deletes every punctuation mark: "1,000" -> "1000".
    ("1,000", answers(("1000", 3), ("1", 7)), 0.9, 0.9, 0.9),
    # "$" is not in the punctuation list.
    ("$5", answers(("5", 5), ("6", 5)), 0.0, 0.0, 0.0),
    # A hyphen between letters becomes a space.
    ("t-shirt", answers(("t shirt", 5), ("shirt", 5)), 1.0, 1.0, 1.0),
    # The annotators' side is processed only by m4c when they agree.
    ("yes", answers(("Yes", 10)), 0.0, 0.0, 1.0),
]


@pytest.mark.parametrize(("prediction", "gold", "official", "evalai", "m4c"), VECTORS)
def test_accuracy_vectors(prediction, gold, official, evalai, m4c):
    assert accuracy(prediction, gold, "official") == pytest.approx(official)
    assert accuracy(prediction, gold, "evalai") == pytest.approx(evalai)
    assert accuracy(prediction, gold, "m4c") == pytest.approx(m4c)


# VizWiz's evaluation processes the prediction always and the annotators' answers never.
@pytest.mark.parametrize(("prediction", "gold", "vizwiz", "vqa"), [
    ("Yes.", answers(("yes", 10)), 1.0, 0.0),
    ("yes", answers(("Yes", 10)), 0.0, 0.0),
    ("the dog", answers(("the dog", 10)), 0.0, 1.0),  # the article goes from the prediction only
    ("Unanswerable", answers(("unanswerable", 8), ("blue", 2)), 1.0, 1.0),
])
def test_vizwiz_official_processing(prediction, gold, vizwiz, vqa):
    assert accuracy(prediction, gold, "official", vizwiz_prepare) == pytest.approx(vizwiz)
    assert accuracy(prediction, gold, "official") == pytest.approx(vqa)


def test_answer_processing_steps():
    assert process_punctuation("hello, world") == "hello world"  # ", " is spaced: the mark is deleted
    assert process_punctuation("red,blue") == "red blue"  # not spaced: the mark becomes a space
    assert process_punctuation("3.5") == "3.5" and process_punctuation("ok.") == "ok"
    assert process_punctuation("a.b") == "ab"  # every "." not before a digit goes
    assert process_digit_article("The Three Dogs") == "3 dogs"
    assert process_digit_article("Im here") == "im here"  # the capitalised key never matches: lowercased first
    assert evalai_process("What's THAT?") == "what 's that"
    assert evalai_process("1,000 cats") == "1000 cats"
    with pytest.raises(ValueError):
        accuracy("yes", ["yes"], "lenient")


def write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def ann(answer_list):
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answer_list)]


@pytest.fixture
def coco_vqa(tmp_path):
    """VQAv2/OK-VQA layout: questions + annotations, three questions."""
    qs = [{"image_id": 42, "question": "What is it?", "question_id": 420},
          {"image_id": 42, "question": "How many?", "question_id": 421},
          {"image_id": 7, "question": "Is it red?", "question_id": 70}]
    gold = {420: answers(("dog", 6), ("puppy", 4)), 421: answers(("2", 3), ("3", 7)), 70: answers(("yes", 10))}
    types = {420: "other", 421: "number", 70: "yes/no"}
    annotations = [{"question_id": q, "image_id": 0, "answers": ann(a), "answer_type": types[q],
                    "question_type": "what"} for q, a in gold.items()]
    return (write(tmp_path / "questions.json", {"data_subtype": "val2014", "questions": qs}),
            write(tmp_path / "annotations.json", {"annotations": annotations}))


def score(tmp_path, *args) -> dict:
    out = tmp_path / "scores.json"
    assert cli.main(["score", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_vqav2_layout_scores_like_the_official_script(tmp_path, coco_vqa, capsys):
    questions, annotations = coco_vqa
    preds = write(tmp_path / "preds.json", [{"question_id": 420, "answer": "dog"},
                                           {"question_id": 421, "answer": "2"},
                                           {"question_id": 70, "answer": "Yes"}])
    args = ["--task", "vqav2", "--questions", questions, "--annotations", annotations, "--predictions", preds]
    official = score(tmp_path, *args, "--answer-processing", "official")
    assert official["metrics"]["accuracy"] == pytest.approx((1.0 + 0.9 + 0.0) / 3)
    assert official["breakdown"]["answer_type"] == pytest.approx({"number": 0.9, "other": 1.0, "yes/no": 0.0})
    assert official["settings"]["answer_processing"] == "official"
    assert score(tmp_path, *args)["metrics"]["accuracy"] == pytest.approx((1.0 + 0.9 + 1.0) / 3)  # evalai
    table = (tmp_path / "scores.md").read_text()
    assert "| accuracy | 0.9667 |" in table and "3 questions scored" in table


def test_llava_answer_lines_are_read_too(tmp_path, coco_vqa):
    questions, annotations = coco_vqa
    preds = tmp_path / "answers.jsonl"
    preds.write_text("".join(json.dumps({"question_id": q, "text": t, "model_id": "x"}) + "\n"
                             for q, t in ((420, "Dog"), (421, "two"), (70, "yes"))))
    result = score(tmp_path, "--task", "okvqa", "--questions", questions, "--annotations", annotations,
                   "--predictions", str(preds))
    assert result["settings"]["answer_processing"] == "m4c"
    assert result["metrics"]["accuracy"] == pytest.approx((1.0 + 0.9 + 1.0) / 3)


def test_missing_unknown_and_duplicate_predictions_fail_loudly(tmp_path, coco_vqa, capsys):
    questions, annotations = coco_vqa
    base = ["score", "--task", "vqav2", "--questions", questions, "--annotations", annotations]
    some = write(tmp_path / "some.json", [{"question_id": 420, "answer": "dog"}])
    assert cli.main([*base, "--predictions", some]) == 2
    assert "2 of 3 questions have no prediction" in capsys.readouterr().err
    out = tmp_path / "partial.json"
    assert cli.main([*base, "--predictions", some, "--partial", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["scored"] == 1
    unknown = write(tmp_path / "unknown.json", [{"question_id": 999, "answer": "dog"}])
    assert cli.main([*base, "--predictions", unknown]) == 2
    assert "questions the annotations do not have" in capsys.readouterr().err
    twice = write(tmp_path / "twice.json", [{"question_id": 420, "answer": "dog"}] * 2)
    assert cli.main([*base, "--predictions", twice]) == 2
    assert "a second prediction" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question_id": 420, "text": "dog"}\n{not json\n')
    assert cli.main([*base, "--predictions", str(broken)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err


def test_empty_or_wrong_files_fail_loudly(tmp_path, capsys):
    empty_q = write(tmp_path / "q.json", {"questions": []})
    empty_a = write(tmp_path / "a.json", {"annotations": []})
    preds = write(tmp_path / "p.json", [{"question_id": 1, "answer": "x"}])
    assert cli.main(["score", "--task", "vqav2", "--questions", empty_q, "--annotations", empty_a,
                     "--predictions", preds]) == 2
    assert "gave 0 questions" in capsys.readouterr().err
    # A TextVQA file given as VQAv2 annotations: the layout is named, nothing is scored.
    textvqa = write(tmp_path / "t.json", {"data": []})
    assert cli.main(["score", "--task", "vqav2", "--questions", empty_q, "--annotations", textvqa,
                     "--predictions", preds]) == 2
    assert "no 'annotations' field" in capsys.readouterr().err
    assert cli.main(["score", "--task", "nope", "--predictions", preds]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_vizwiz_and_textvqa_layouts(tmp_path):
    vizwiz = write(tmp_path / "val.json", [
        {"image": "VizWiz_val_00000001.jpg", "question": "What is this?", "answerable": 1, "answer_type": "other",
         "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers(("soup", 7), ("can", 3))]},
        {"image": "VizWiz_val_00000002.jpg", "question": "Colour?", "answerable": 0,
         "answer_type": "unanswerable",
         "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10}])
    preds = write(tmp_path / "vw.json", [{"image": "VizWiz_val_00000001.jpg", "answer": "Soup."},
                                         {"image": "VizWiz_val_00000002.jpg", "answer": "Unanswerable"}])
    result = score(tmp_path, "--task", "vizwiz", "--annotations", vizwiz, "--predictions", preds)
    assert result["metrics"]["accuracy"] == pytest.approx(1.0)
    assert set(result["breakdown"]["answer_type"]) == {"other", "unanswerable"}

    textvqa = write(tmp_path / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": [
        {"question_id": 1, "question": "what brand?", "image_id": "abc", "answers": answers(("Nike", 10))},
        {"question_id": 2, "question": "what number?", "image_id": "def", "answers": answers(("12", 2), ("21", 8))}]})
    preds = write(tmp_path / "tv.json", [{"question_id": 1, "answer": "nike"}, {"question_id": 2, "answer": "12"}])
    m4c = score(tmp_path, "--task", "textvqa", "--annotations", textvqa, "--predictions", preds)
    assert m4c["metrics"]["accuracy"] == pytest.approx((1.0 + 0.6) / 2)
    official = score(tmp_path, "--task", "textvqa", "--annotations", textvqa, "--predictions", preds,
                     "--answer-processing", "official")
    assert official["metrics"]["accuracy"] == pytest.approx((0.0 + 0.6) / 2)  # "nike" != "Nike", all agree

"""The lmms-eval adapter, offline: a local task from JSON lines and PNGs run by lmms-eval's own evaluator on the
tiny model, and its likelihood requests. Skipped where lmms-eval is not installed (`pip install -e .[lmms]`)."""

from __future__ import annotations

import json

import pytest

from tests.model_helpers import drawn_image

pytest.importorskip("lmms_eval")

from lmms_eval.api.instance import Instance  # noqa: E402
from lmms_eval.evaluator import simple_evaluate  # noqa: E402
from lmms_eval.tasks import TaskManager  # noqa: E402
from PIL import Image  # noqa: E402

from model.checkpoint import load_model  # noqa: E402
from model.serving.engine import SamplingParams  # noqa: E402
from training.evaluation.lmms_adapter import OmniFusionLMM  # noqa: E402
from training.evaluation.runner import Prompt, answer_all, candidate_likelihoods  # noqa: E402

UTILS = '''from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc):
    return doc["question"]
'''
COMMON = """dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
"""
GENERATE = """task: omnifusion_local_gen
output_type: generate_until
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 5
  temperature: 0
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
@pytest.fixture
def tasks(tmp_path):
    docs = []
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        path = tmp_path / f"img{i}.png"
        drawn_image(colour).save(path)
        docs.append({"image": str(path), "question": "What colour is the shape?", "answer": "red"})
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "utils.py").write_text(UTILS)
    (folder / "gen.yaml").write_text(COMMON.format(data=data) + GENERATE)
    return folder, docs


def test_lmms_eval_runs_our_model_on_a_local_task(tasks):
    folder, docs = tasks
    adapter = OmniFusionLMM(preset="tiny", device="cpu", batch_size=2)
    results = simple_evaluate(model=adapter, tasks=["omnifusion_local_gen"],
                              task_manager=TaskManager(include_path=str(folder)), log_samples=True)
    prompts = [Prompt(d["question"], [d["image"]]) for d in docs]
    # lmms-eval frees the model's modules after a run; the tiny preset is the same random model every time.
    expected = answer_all(load_model("tiny", device="cpu"), prompts, SamplingParams(max_new_tokens=5), progress=False)
    generated = sorted(results["samples"]["omnifusion_local_gen"], key=lambda s: s["doc_id"])
    assert [s["resps"][0][0] for s in generated] == expected  # lmms-eval's answers are our engine's answers
    assert "exact_match,none" in results["results"]["omnifusion_local_gen"]


def test_loglikelihood_is_the_mean_loss_lmms_eval_tasks_expect(tasks):
    # lmms-eval 0.7.3's evaluator turns every loglikelihood result into a string (unwrap_generation_output), so
    # its multiple-choice tasks fail for any model; the adapter's requests are checked here directly.
    _, docs = tasks
    adapter = OmniFusionLMM(preset="tiny", device="cpu")
    adapter.task_dict = {"local": {"test": docs}}

    def doc_to_visual(doc):
        return [Image.open(doc["image"]).convert("RGB")]

    requests = [Instance("loglikelihood", (d["question"], choice, doc_to_visual, i, "local", "test"), i,
                         {"task": "local", "doc_id": i, "repeats": 1})
                for i, d in enumerate(docs) for choice in (" red", " blue")]
    out = adapter.loglikelihood(requests)
    for (loss, greedy), request in zip(out, requests, strict=True):
        context, choice, _, doc_id, _, _ = request.args
        (ours,) = candidate_likelihoods(adapter.model, Prompt(context, [docs[doc_id]["image"]]), [choice])
        assert loss == pytest.approx(-ours.logp / ours.tokens, abs=1e-4) and loss > 0
        assert greedy == ours.greedy


def test_multi_round_tasks_get_the_answers_so_far_and_each_request_ends_on_its_own(tasks, monkeypatch):
    # lmms-eval's protocol: round 0 is the request's context; then the task's doc_to_text gets the answers so far
    # and returns the next round's pictures and text, or that it has ended. Checked on the adapter directly, as
    # the likelihoods above.
    from training.evaluation import lmms_adapter

    _, docs = tasks
    adapter = OmniFusionLMM(preset="tiny", device="cpu", batch_size=2)
    adapter.task_dict = {"local": {"test": docs}}
    follow_ups = ("And what shape is it?", "Where is it?")
    rounds = {docs[0]["image"]: 2, docs[1]["image"]: 3}  # the two requests end after different rounds
    seen = []

    def doc_to_visual(doc):
        return [Image.open(doc["image"]).convert("RGB")]

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        seen.append((doc["image"], round_idx, list(previous_output), previous_round_info))
        if round_idx >= rounds[doc["image"]]:
            return None, None, True, previous_output, None
        return doc_to_visual(doc), follow_ups[round_idx - 1], False, previous_output, {"after": round_idx}

    def requests(next_text):
        return [Instance("generate_until_multi_round",
                         (d["question"], {"max_new_tokens": 5, "until": ["\n"]}, doc_to_visual, next_text, i, "local",
                          "test"), i, {"task": "local", "doc_id": i, "repeats": 1})
                for i, d in enumerate(docs)]

    out = adapter.generate_until_multi_round(requests(doc_to_text))
    params = SamplingParams(max_new_tokens=5, stop=("\n",), seed=0)
    for doc, answers in zip(docs, out, strict=True):
        texts = [doc["question"], *follow_ups[:rounds[doc["image"]] - 1]]
        assert answers == answer_all(adapter.model, [Prompt(t, [doc["image"]]) for t in texts], params,
                                     progress=False)
    assert [len(a) for a in out] == [2, 3]
    assert (docs[1]["image"], 2, out[1][:2], {"after": 1}) in seen  # the answers so far and its own info
    assert (docs[0]["image"], 3, out[0], {"after": 2}) not in seen  # an ended request is asked nothing more

    def endless(doc, previous_output=None, round_idx=None, previous_round_info=None):
        return None, "Again?", False, previous_output, None

    monkeypatch.setattr(lmms_adapter, "MAX_ROUNDS", 3)
    with pytest.raises(RuntimeError, match="did not end after 3 rounds"):
        adapter.generate_until_multi_round(requests(endless))

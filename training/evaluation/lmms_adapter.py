"""Our checkpoints as an lmms-eval model, so any lmms-eval task runs with them (`pip install -e .[lmms]`):

    python -m lmms_eval --model omnifusion --model_args path=runs/stage2,batch_size=16 --tasks textvqa_val

The name is registered through the `lmms_eval.models` entry point (pyproject.toml); from Python,
`lmms_eval.evaluator.simple_evaluate(model=OmniFusionLMM(path=...), tasks=[...])` needs no registration.
Generation goes through runner.answer_all (continuous batching on our engine), likelihoods through
runner.candidate_likelihoods; images come first, then lmms-eval's prompt text, in the released layout.
Multi-round tasks (`generate_until_multi_round`) follow lmms-eval's protocol: after each round the task's
doc_to_text gets the answers so far and returns the next round's pictures and text, or that it has ended.
"""

from __future__ import annotations

from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from model.checkpoint import load_model
from model.serving.engine import SamplingParams
from training.evaluation.runner import Prompt, answer_all, candidate_likelihoods

# A task that never says it has ended is stopped with an error rather than run for ever.
MAX_ROUNDS = 32

MANIFEST = ModelManifest(model_id="omnifusion",
                         simple_class_path="training.evaluation.lmms_adapter.OmniFusionLMM")


class OmniFusionLMM(lmms):
    def __init__(self, path: str | None = None, preset: str = "tiny", device: str = "auto", batch_size=16,
                 **kwargs):
        super().__init__()
        self.model = load_model(preset, path, device=device)
        self.batch_size = int(batch_size)

    def _prompt(self, context, doc_to_visual, doc_id, task, split) -> Prompt:
        return _prompt(context, doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual else None)

    def generate_until(self, requests) -> list[str]:
        prompts = [self._prompt(r.args[0], *r.args[2:]) for r in requests]
        params = [_params(r.args[1]) for r in requests]
        out = answer_all(self.model, prompts, params, self.batch_size)
        for request, text in zip(requests, out, strict=True):
            self.cache_hook.add_partial("generate_until", (request.args[0], request.args[1]), text)
        return out

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """(mean negative log-likelihood per token, is greedy): lmms-eval's convention, not lm-eval's. Its
        multiple-choice scoring takes the argmin, written for its models, which return the mean loss (as its
        LLaVA model does)."""
        out = []
        for context, target, doc_to_visual, doc_id, task, split in [r.args for r in requests]:
            continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
            prompt = self._prompt(context, doc_to_visual, doc_id, task, split)
            (c,) = candidate_likelihoods(self.model, prompt, [continuation], self.batch_size)
            out.append((-c.logp / c.tokens if c.tokens else float("inf"), c.greedy))
        return out

    def generate_until_multi_round(self, requests) -> list[list[str]]:
        """Each request's rounds, in lmms-eval's protocol (as its Qwen2-VL model runs it): round 0 is the request's
        context and the doc's pictures; then the task's doc_to_text(doc, previous_output=answers so far,
        round_idx=k, previous_round_info=...) returns (pictures, text, ended, round results, info) for round k.
        Each round is a prompt of its own, as there: a task that wants the history puts it in the text. Unlike
        there, each request ends when its own task says so, and the open requests of a round are answered
        together."""
        dialogs = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            dialogs.append({"doc": self.task_dict[task][split][doc_id], "next": doc_to_text,
                            "prompt": self._prompt(context, doc_to_visual, doc_id, task, split),
                            "params": _params(gen_kwargs), "outputs": [], "info": None})
        open_, round_idx = list(range(len(dialogs))), 0
        while open_:
            round_idx += 1
            if round_idx > MAX_ROUNDS:
                first = requests[open_[0]].args
                raise RuntimeError(f"a multi-round task did not end after {MAX_ROUNDS} rounds "
                                   f"(task {first[5]!r}, doc {first[4]})")
            answers = answer_all(self.model, [dialogs[i]["prompt"] for i in open_],
                                 [dialogs[i]["params"] for i in open_], self.batch_size)
            still = []
            for i, text in zip(open_, answers, strict=True):
                d = dialogs[i]
                d["outputs"].append(text)
                visuals, context, ended, results, d["info"] = d["next"](
                    d["doc"], previous_output=list(d["outputs"]), round_idx=round_idx, previous_round_info=d["info"])
                if results is not None:
                    d["outputs"] = list(results)
                if not ended:
                    d["prompt"] = _prompt(context, visuals)
                    still.append(i)
            open_ = still
        for request, d in zip(requests, dialogs, strict=True):
            self.cache_hook.add_partial("generate_until_multi_round", (request.args[0], request.args[1]), d["outputs"])
        return [d["outputs"] for d in dialogs]


def _prompt(context, visuals) -> Prompt:
    visuals = [v for v in (visuals if isinstance(visuals, list) else [visuals]) if v is not None]
    return Prompt(context[0] if isinstance(context, list) else context, visuals)


def _params(gen_kwargs: dict) -> SamplingParams:
    until = gen_kwargs.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    temperature = float(gen_kwargs.get("temperature") or 0.0) if gen_kwargs.get("do_sample") else 0.0
    return SamplingParams(max_new_tokens=int(gen_kwargs.get("max_new_tokens") or 128), temperature=temperature,
                          stop=until or None, seed=0)

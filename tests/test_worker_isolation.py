"""One failing request fails alone: bad params are refused up front, a request that breaks the model (or a
batch too big for memory) is found by bisection, and healthy neighbours finish without a `restart`.

Faults are injected into the real model with forward hooks, the way an out-of-memory would surface."""

import contextlib

import pytest
import torch

from model import protocol
from model.dialog import encode_dialog
from model.serving.engine import BatchGenerator, Request, SamplingParams, generate
from model.tokenizer import encode_segment
from tests.model_helpers import user
from tests.worker_helpers import events, submit, worker_thread

GREEDY = {"max_new_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


def embed(model, text):
    enc = encode_dialog([user(text)], model.tokenizer, model.config)
    return model.embed_dialog(enc, [])[0]


def alone(model, text, max_new_tokens=GREEDY["max_new_tokens"]):
    return generate(model, [embed(model, text)], SamplingParams(max_new_tokens=max_new_tokens, stop=()))[0][0]


@contextlib.contextmanager
def fault(module, when):
    """Make `module` raise like a CUDA out-of-memory whenever `when(hidden_states)` is true."""
    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("inputs_embeds"))
        if hidden is not None and when(hidden, kwargs):
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def kinds(evs):
    return [e["event"] for e in evs]


def test_three_healthy_jobs_and_one_bad_seed(redis_url, redis_client, model):
    texts = ["hello there", "what is a cat", "tell me more"]
    healthy = [submit(redis_client, [user(t)], GREEDY) for t in texts]
    bad = submit(redis_client, [user("and me")], {**GREEDY, "seed": "x"})
    with worker_thread(redis_url, model, worker_max_batch=4):  # all four are taken in one read
        answers = [events(redis_client, j.reply) for j in healthy]
        err = events(redis_client, bad.reply)
    for evs, text in zip(answers, texts, strict=True):
        assert kinds(evs)[-1] == "done" and "restart" not in kinds(evs)
        assert evs[-1]["text"] == alone(model, text)
    assert kinds(err) == ["error"] and err[0]["code"] == "bad_job" and "seed" in err[0]["message"]


@pytest.mark.parametrize("params, word", [
    ({"max_new_tokens": True}, "max_new_tokens"), ({"temperature": False}, "temperature"),
    ({"seed": 2**64}, "seed"), ({"seed": True}, "seed"), ({"seed": 1.5}, "seed"),
    ({"top_k": True}, "top_k"), ({"stop": ["x" * 65]}, "stop"), ({"stop": ["a"] * 17}, "stop"),
])
def test_params_are_checked_strictly(params, word):
    with pytest.raises(ValueError, match=word):
        SamplingParams.from_dict(params)


@pytest.mark.parametrize("deadline", ["NaN", "Infinity", "-Infinity", "true", "1e999"])
def test_deadline_must_be_a_finite_time(deadline):
    raw = ('{"v": 1, "id": "a", "reply": "omnifusion:reply:a", "messages": '
           '[{"role": "user", "content": "hi"}], "deadline": ' + deadline + "}")
    with pytest.raises(protocol.ProtocolError, match="deadline") as info:
        protocol.parse_job(raw)
    assert info.value.code == "bad_job"


def test_a_prompt_that_breaks_the_prefill_fails_alone(redis_url, redis_client, model):
    texts = ["hello there", "what is a cat", "tell me more"]
    poison_text = "qqqq zzzz"
    healthy_ids = {t for text in texts for t in encode_segment(model.tokenizer, text)}
    marker = next(t for t in encode_segment(model.tokenizer, poison_text) if t not in healthy_ids)
    marked = model.llm.get_input_embeddings().weight[marker].detach()
    prefills = []

    def poisoned(hidden, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            return False
        prefills.append(embeds.shape[0])
        return bool((embeds == marked).all(-1).any())

    healthy = [submit(redis_client, [user(t)], GREEDY) for t in texts]
    bad = submit(redis_client, [user(poison_text)], GREEDY)
    with fault(model.llm, poisoned), worker_thread(redis_url, model, worker_max_batch=4):
        answers = [events(redis_client, j.reply) for j in healthy]
        err = events(redis_client, bad.reply)
    assert max(prefills) == 4  # the four were prefilled together first, then split
    for evs, text in zip(answers, texts, strict=True):
        assert kinds(evs)[-1] == "done" and "restart" not in kinds(evs)
        assert evs[-1]["text"] == alone(model, text)
    assert kinds(err) == ["error"] and err[0]["code"] == "internal"
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0
    assert redis_client.xlen(protocol.DEAD_STREAM) == 0


def test_a_row_that_breaks_a_decode_step_fails_alone(redis_url, redis_client, model):
    texts = ["hello there", "what is a cat", "tell me more"]
    poison_text = "a long question " * 6
    poison_len = len(embed(model, poison_text))
    assert all(len(embed(model, t)) + GREEDY["max_new_tokens"] < poison_len for t in texts)
    threshold = poison_len + 3  # the poisoned row reaches it at its 4th token; the healthy rows never do

    def at_threshold(hidden, kwargs):
        positions = kwargs.get("position_ids")
        return hidden.shape[1] == 1 and positions is not None and int(positions.max()) >= threshold

    healthy = [submit(redis_client, [user(t)], GREEDY) for t in texts]
    bad = submit(redis_client, [user(poison_text)], {**GREEDY, "max_new_tokens": 50})
    layer = model.llm.model.layers[-1]  # the last layer: earlier ones have already written to the cache
    with fault(layer, at_threshold), worker_thread(redis_url, model, worker_max_batch=4,
                                                   worker_delta_interval_s=0):
        answers = [events(redis_client, j.reply) for j in healthy]
        err = events(redis_client, bad.reply)
    for evs, text in zip(answers, texts, strict=True):
        assert kinds(evs)[-1] == "done" and "restart" not in kinds(evs)
        assert evs[-1]["text"] == alone(model, text)
    assert kinds(err)[-1] == "error" and err[-1]["code"] == "internal" and "restart" not in kinds(err)


def test_a_batch_too_big_for_memory_is_split_and_every_row_finishes(model):
    """An OOM that only the whole batch hits (here: four rows or more) costs no request anything: the step is
    undone, the batch bisected, and every answer is token for token what it is alone."""
    texts = ["hello there", "what is a cat", "tell me more", "a story please", "why is the sky blue"]
    params = SamplingParams(max_new_tokens=10, stop=())
    engine = BatchGenerator(model)
    errors = []
    with fault(model.llm.model.layers[-1], lambda hidden, _: hidden.shape[0] >= 4 and hidden.shape[1] == 1):
        events = engine.add([Request(str(i), embed(model, t), params) for i, t in enumerate(texts)])
        tokens = {r.id: r.tokens for r in engine.rows}
        while engine.rows:
            events = engine.step()
            errors += [e for e in events if e.error]
    assert not errors
    for i, text in enumerate(texts):
        want = generate(model, [embed(model, text)], params)[0][2]
        assert tokens[str(i)] == want


def test_one_row_with_broken_logits_ends_only_that_row(model):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, seed=1, stop=())
    engine = BatchGenerator(model)
    engine.add([Request("ok", embed(model, "hello"), params), Request("nan", embed(model, "hi"), params)])
    broken = SamplingParams(max_new_tokens=6, temperature=1.0, seed=1, stop=())
    broken.temperature = float("nan")  # past validation: as if one row's state had gone bad
    next(r for r in engine.rows if r.id == "nan").params = broken
    out = engine.step()
    failed = [e for e in out if e.finish == "error"]
    assert [e.id for e in failed] == ["nan"] and isinstance(failed[0].error, RuntimeError)
    assert [r.id for r in engine.rows] == ["ok"]
    while engine.rows:
        engine.step()

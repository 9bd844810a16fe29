"""Limits the worker enforces rather than assumes: text too long to fit is cut before tokenizing, admission
counts the padded cache, image bytes must hash to their key, /metrics stays on loopback by default."""

import random

import pytest
import torch

from model import protocol
from model.dialog import DialogTooLong, encode_dialog
from model.serving.batching import length_groups
from model.serving.engine import BatchGenerator, Request, SamplingParams
from model.serving.kvcache import admissible, peak_slots
from model.serving.settings import WorkerSettings
from model.serving.text_limits import bound_text, max_token_chars
from model.serving.worker_metrics import WorkerMetrics
from tests.model_helpers import assistant, drawn_image, png_bytes, user
from tests.worker_helpers import events, submit, worker_thread


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


def final(evs):
    assert evs[-1]["event"] in ("done", "error") and sum(e["event"] in ("done", "error") for e in evs) == 1
    return evs[-1]


# --- text too long to fit ---------------------------------------------------------------------------------

def encoded_or_code(messages, model, budget, max_images=2):
    try:
        d = encode_dialog(messages, model.tokenizer, model.config, max_tokens=budget, max_images=max_images)
    except DialogTooLong as exc:
        return "too_many_images" if "images" in str(exc) else "too_long"
    return ([(s.kind, s.ids, s.name, s.image) for s in d.segments], d.image_keys, d.dropped_turns)


def random_text(rng, n):
    words = ["cat", "sofa", "  ", "\n", "Кошка", "window!", "x" * 12, " ", "the"]
    return "".join(rng.choice(words) + rng.choice(["", " "]) for _ in range(n))


def test_bound_text_changes_nothing_encode_dialog_builds(model):
    """Many random dialogs with texts around the cut: same segments, same dropped turns, same carried photo,
    same too_long, while the text that reaches the tokenizer is bounded."""
    rng, budget = random.Random(7), 60
    cap = max_token_chars(model.tokenizer) * budget
    outcomes = set()
    for _ in range(300):
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": [{"type": "text", "text": random_text(rng, 5)}]})
        for t in range(rng.randint(1, 5)):
            keys = [protocol.image_key(f"{t}{k}") for k in range(rng.choice([0, 0, 1, 2]))]
            messages.append(user(random_text(rng, rng.choice([1, 10, 60, 200])), *keys))
            messages.append(assistant(random_text(rng, rng.choice([1, 10, 60, 200]))))
        messages.pop()  # the last message is the user's turn to answer
        want = encoded_or_code(messages, model, budget)
        try:
            bounded = bound_text(messages, cap)
        except protocol.ProtocolError as exc:
            assert exc.code == want == "too_long"
            outcomes.add("refused early")
            continue
        assert encoded_or_code(bounded, model, budget) == want
        texts = [p["text"] for m in bounded for p in m["content"] if p["type"] == "text"]
        assert sum(map(len, texts)) <= 2 * cap + sum(len(p["text"]) for p in messages[0]["content"]
                                                     if messages[0]["role"] == "system" and p["type"] == "text")
        outcomes.add(want if isinstance(want, str) else ("dropped" if want[2] else "whole"))
    assert {"refused early", "dropped", "whole"} <= outcomes  # the cases that matter all came up


def test_ten_megabytes_of_text_are_refused_without_tokenizing_them(redis_url, redis_client, model,
                                                                    monkeypatch):
    seen = []
    encode = model.tokenizer.encode
    monkeypatch.setattr(model.tokenizer, "encode", lambda text, **kw: seen.append(len(text)) or encode(text, **kw))
    huge = "word " * 2_000_000  # 10 MB
    with worker_thread(redis_url, model) as worker:
        err = final(events(redis_client, submit(redis_client, [user(huge)]).reply))
        history = submit(redis_client, [user(huge), assistant("ok"), user("and now?")], {"max_new_tokens": 4})
        done = final(events(redis_client, history.reply))
        cap = worker.prepare.chars_per_token * worker.settings.worker_max_input_tokens
    assert (err["event"], err["code"]) == ("error", "too_long") and "characters" in err["message"]
    assert done["event"] == "done"  # a huge old turn is dropped, as it always was: the question is answered
    assert max(seen) <= cap  # the 10 MB never reached the tokenizer


# --- admission on the padded size -----------------------------------------------------------------------

def simulated_peak(rows):
    """Step the batch one token at a time: every row is padded to the longest of those still there."""
    rows, peak = [list(r) for r in rows], 0
    while rows:
        peak = max(peak, len(rows) * max(length for length, _ in rows))
        rows = [[length + 1, left - 1] for length, left in rows if left > 0]
    return peak


def test_peak_slots_is_the_simulated_peak():
    rng = random.Random(1)
    for _ in range(200):
        rows = [(rng.randint(1, 900), rng.randint(1, 300)) for _ in range(rng.randint(1, 16))]
        assert peak_slots(rows) == simulated_peak(rows)
    # the reviewer's case: one 900-token prompt and fifteen 20-token ones hold 16 x 900 cells, not 1,200
    assert peak_slots([(900, 16)] + [(20, 16)] * 15) == 16 * 916


def test_admission_is_first_come_first_served_within_the_padded_budget():
    assert admissible([], [(900, 16)] + [(20, 16)] * 15, budget=4000) == 4  # 4 x 916 fits, 5 x 916 does not
    assert admissible([(900, 16)], [(20, 16)] * 3, budget=4000) == 3
    assert admissible([(20, 16)], [(900, 16), (20, 16)], budget=1000) == 0  # no overtaking: the long one waits
    assert admissible([], [(5000, 16)], budget=1000) == 1  # too big for any batch: it runs alone


def test_worker_keeps_the_padded_cache_within_its_budget(redis_url, redis_client, model):
    long_text = "the cat on the sofa " * 200
    long_len = len(encode_dialog([user(long_text)], model.tokenizer, model.config))
    assert 600 < long_len < 1500
    params = {"max_new_tokens": 16}
    budget = 4 * (long_len + 16)  # the long job and three short ones at a time, never all sixteen
    held = []
    with worker_thread(redis_url, model, worker_max_batch=16, worker_max_tokens_in_flight=budget) as worker:
        step = worker.engine.step
        worker.engine.step = lambda: held.append(worker.engine.slots()) or step()
        jobs = [submit(redis_client, [user(long_text)], params)]
        jobs += [submit(redis_client, [user(f"short question {i}")], params) for i in range(15)]
        assert all(final(events(redis_client, j.reply))["event"] == "done" for j in jobs)
        planned = worker.metrics.kv_slots_peak._value.get()
    assert max(held) <= budget and planned <= budget
    assert max(held) > 3 * long_len  # it did batch: the long job with short ones


def test_prefill_groups_by_length_so_short_prompts_skip_the_long_ones_padding(model):
    embeds = [torch.zeros(900, 1)] + [torch.zeros(20, 1)] * 15
    groups = length_groups(embeds, lambda e: e.shape[0])
    assert sorted(len(g) for g in groups) == [1, 15]
    cells = []
    handle = model.llm.register_forward_pre_hook(
        lambda _m, _a, kw: cells.append(kw["inputs_embeds"].shape[0] * kw["inputs_embeds"].shape[1])
        if kw.get("inputs_embeds") is not None else None, with_kwargs=True)
    try:
        table = model.llm.get_input_embeddings()
        prompts = [table(torch.arange(900) % 500), *(table(torch.arange(20) + i) for i in range(15))]
        BatchGenerator(model).add([Request(str(i), p.detach(), SamplingParams(max_new_tokens=2, stop=()))
                                   for i, p in enumerate(prompts)])
    finally:
        handle.remove()
    assert sum(cells) == 900 + 15 * 20  # no padding prefilled, instead of 16 x 900


# --- image keys, metrics ---------------------------------------------------------------------------------

def test_image_bytes_must_hash_to_their_key(redis_url, redis_client, model):
    real, other = png_bytes(drawn_image((1, 2, 3))), png_bytes(drawn_image((9, 9, 9)))
    forged = protocol.image_key_for(other)
    redis_client.set(forged, real, ex=60)  # a valid photo, stored under another photo's key
    with worker_thread(redis_url, model) as worker:
        err = final(events(redis_client, submit(redis_client, [user("?", forged)]).reply))
        assert worker.cache.get(forged) is None  # never cached under the wrong name
    assert (err["event"], err["code"]) == ("error", "bad_image") and "sha256" in err["message"]


def test_metrics_bind_loopback_unless_configured():
    assert WorkerSettings(_env_file=None).worker_metrics_host == "127.0.0.1"
    server, thread = WorkerMetrics().serve(0, "127.0.0.1")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        thread.join(5)

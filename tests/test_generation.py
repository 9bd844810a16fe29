"""Generation: KV cache vs none, batch vs alone, continuous joining, sampling seeds, streaming and stop rules."""

import pytest
import torch

from model.dialog import encode_dialog
from model.release.generation import generate_released
from model.serving.engine import (
    BatchGenerator,
    Request,
    SamplingParams,
    generate,
    greedy_without_cache,
    stream,
)
from model.serving.stopping import StopChecker
from model.tokenizer import IncrementalDecoder
from tests.model_helpers import assistant, drawn_image, key, user

GREEDY = SamplingParams(max_new_tokens=24, stop=())


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def dialogs(model):
    """Three dialogs of different lengths, one with an image, one multi-turn."""
    def embed(msgs, images=()):
        d = encode_dialog(msgs, model.tokenizer, model.config)
        return model.embed_dialog(d, list(model.encode_images(list(images))) if images else [])[0]

    return [
        embed([user("What is on this photo?", key("a"))], [drawn_image()]),
        embed([user("hi")]),
        embed([user("tell me a story"), assistant("once upon a time"), user("go on, please, a long one")]),
    ]


def test_kv_cache_matches_full_recompute(model, dialogs):
    for embeds in dialogs:
        (_, _, tokens), = generate(model, [embeds], GREEDY)
        assert tokens == greedy_without_cache(model, embeds, GREEDY.max_new_tokens)


def test_batch_matches_alone(model, dialogs):
    alone = [generate(model, [e], GREEDY)[0] for e in dialogs]
    together = generate(model, dialogs, GREEDY)
    assert [t[2] for t in together] == [a[2] for a in alone]
    assert [t[0] for t in together] == [a[0] for a in alone]


def test_requests_join_and_leave_mid_generation(model, dialogs):
    alone = {str(i): generate(model, [e], GREEDY)[0][2] for i, e in enumerate(dialogs)}
    short = SamplingParams(max_new_tokens=5, stop=())
    engine = BatchGenerator(model)
    engine.add([Request("0", dialogs[0], GREEDY), Request("short", dialogs[1], short)])
    tokens = {r.id: r.tokens for r in engine.rows}
    for _ in range(7):  # "short" finishes and leaves on the way
        engine.step()
    assert [r.id for r in engine.rows] == ["0"]
    engine.add([Request("1", dialogs[1], GREEDY), Request("2", dialogs[2], GREEDY)])
    tokens.update({r.id: r.tokens for r in engine.rows})
    assert engine.tokens_in_flight() > 0
    while len(engine):
        engine.step()
    assert tokens["short"] == alone["1"][:5]
    assert {k: tokens[k] for k in alone} == alone
    assert engine.kv.cache is None  # everything left: nothing is kept


def test_sampling_is_reproducible_per_request_seed(model, dialogs):
    p = SamplingParams(max_new_tokens=16, temperature=0.9, top_p=0.9, seed=7, stop=())
    a = generate(model, [dialogs[0]], p)[0][2]
    assert generate(model, [dialogs[0]], p)[0][2] == a
    batch = generate(model, [dialogs[1], dialogs[0]], [GREEDY, p])
    assert batch[1][2] == a  # same seed in a batch with others: same tokens
    other = [generate(model, [dialogs[0]], SamplingParams(max_new_tokens=16, temperature=0.9, seed=s,
                                                           stop=()))[0][2] for s in range(4)]
    assert len({tuple(t) for t in other}) > 1


def test_top_p_keeps_only_the_nucleus(model, dialogs):
    # with a tiny top_p only the most likely token survives: sampling equals greedy
    p = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=1e-6, seed=3, stop=())
    assert generate(model, [dialogs[2]], p)[0][2] == generate(model, [dialogs[2]], GREEDY)[0][2][:12]


def test_stream_deltas_add_up_to_the_answer(model, dialogs):
    events = list(stream(model, dialogs[0], GREEDY))
    assert events[-1].finish == "length" and events[-1].tokens == GREEDY.max_new_tokens
    assert "".join(e.text for e in events) == generate(model, [dialogs[0]], GREEDY)[0][0]
    assert all(e.finish is None for e in events[:-1])


def test_stop_string_ends_the_answer_and_is_never_shown(model, dialogs):
    full = generate(model, [dialogs[2]], GREEDY)[0][0]
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert len(stop) == 2
    text, finish, _ = generate(model, [dialogs[2]], SamplingParams(max_new_tokens=24, stop=(stop,)))[0]
    assert finish == "stop" and text == full[:full.find(stop)] and stop not in text


def test_cancel_leaves_the_batch(model, dialogs):
    engine = BatchGenerator(model)
    engine.add([Request("a", dialogs[0], GREEDY), Request("b", dialogs[1], GREEDY)])
    event = engine.cancel("a")
    assert event.finish == "cancelled" and [r.id for r in engine.rows] == ["b"]
    assert engine.cancel("nope") is None


def test_released_beam_settings_run(model, dialogs):
    text = generate_released(model, dialogs[0], max_new_tokens=12)
    assert isinstance(text, str) and "\n" not in text and ":" not in text


def test_stop_checker_holds_back_a_possible_stop_prefix():
    s = StopChecker(("\nUSER",), max_new_tokens=100)
    assert s.feed("Hello", 1) == "Hello"
    assert s.feed("\nUS", 2) == ""  # might be the stop string: wait
    assert s.feed("ed to", 3) == "\nUSed to"  # it was not
    assert s.feed(" be\nUSER: hi", 4) == " be" and s.finish == "stop"
    assert s.text == "Hello\nUSed to be"


def test_stop_checker_wraps_up_at_a_sentence_end():
    s = StopChecker((), max_new_tokens=10, wrap_up=0.5)
    assert s.feed("One.", 2) == "One." and s.finish is None  # too early to wrap up
    s.feed(" Two", 5)
    assert s.finish is None
    assert s.feed(" three.", 6) == " three." and s.finish == "stop"
    t = StopChecker((), max_new_tokens=3)
    t.feed("a", 1), t.feed("b", 2), t.feed("c", 3)
    assert t.finish == "length"


def test_incremental_decoder_handles_multibyte_characters(model):
    text = "Кошка на диване — 猫 🐈 done."
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    dec = IncrementalDecoder(model.tokenizer)
    deltas = [dec.push(i) for i in ids]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


def test_params_are_validated():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams.from_dict({"max_new_tokens": 0, "unknown": 1})
    assert SamplingParams.from_dict({"top_p": 0.5, "junk": True}).top_p == 0.5


def test_padding_does_not_change_logits(model, dialogs):
    """Left padding with masks and positions: a padded row's logits equal the row alone."""
    batch = model.pad_batch(dialogs[:2], left=True)
    with torch.inference_mode():
        together = model.llm(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, -1]
        alone = model.llm(inputs_embeds=dialogs[1][None]).logits[:, -1]
    assert torch.allclose(together[1], alone[0], atol=1e-4)

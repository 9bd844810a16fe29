"""Sequence layout (the released one, exactly) and label masking built per segment."""

import pytest
import torch

from model.config import RELEASED_PROMPT
from model.dialog import IGNORE, DialogTooLong, encode_dialog
from model.tokenizer import encode_segment
from tests.model_helpers import assistant, drawn_image, key, user


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


def ids(model, text):
    return encode_segment(model.tokenizer, text)


def test_released_layout_single_image_before_first_turn(model):
    cfg = model.config
    d = encode_dialog([user("What is on this photo?", key("a"))], model.tokenizer, cfg)
    img = model.encode_images([drawn_image()])  # [1, N, H]
    embeds, labels = model.embed_dialog(d, list(img))
    table = model.llm.get_input_embeddings()
    prompt, question = ids(model, RELEASED_PROMPT), ids(model, "What is on this photo?")
    expected = torch.cat([
        table(torch.tensor(prompt)), model.special["SOI"][None], img[0], model.special["EOI"][None],
        model.special["USER"][None], table(torch.tensor(question)), model.special["BOT"][None]])
    assert torch.equal(embeds, expected)
    assert d.image_positions() == [len(prompt) + 1]
    assert d.image_keys == [key("a")]
    assert (labels == IGNORE).all()  # nothing to learn in a question


def test_later_images_sit_before_their_turns_user_vector(model):
    cfg, n = model.config, model.config.vision_num_patches
    msgs = [user("hi"), assistant("hello"), user("and this?", key("b"), key("c"))]
    d = encode_dialog(msgs, model.tokenizer, cfg)
    kinds = [(s.kind, s.name) for s in d.segments]
    assert kinds == [("text", ""), ("special", "USER"), ("text", ""), ("special", "BOT"), ("text", ""),
                     ("special", "SOI"), ("image", ""), ("special", "EOI"),
                     ("special", "SOI"), ("image", ""), ("special", "EOI"),
                     ("special", "USER"), ("text", ""), ("special", "BOT")]
    imgs = model.encode_images([drawn_image((0, 0, 255)), drawn_image((0, 255, 0))])
    embeds, _ = model.embed_dialog(d, list(imgs))
    for i, pos in enumerate(d.image_positions()):
        assert torch.equal(embeds[pos - 1], model.special["SOI"])
        assert torch.equal(embeds[pos:pos + n], imgs[i])
        assert torch.equal(embeds[pos + n], model.special["EOI"])
    assert len(embeds) == len(d)


def test_text_only_dialog_has_no_image_vectors(model):
    d = encode_dialog([user("hello"), assistant("hi"), user("how are you?")], model.tokenizer, model.config)
    embeds, _ = model.embed_dialog(d, [])
    assert d.image_positions() == [] and d.image_keys == []
    for name in ("SOI", "EOI"):
        assert not any(torch.equal(row, model.special[name]) for row in embeds)
    assert sum(torch.equal(row, model.special["USER"]) for row in embeds) == 2


def test_system_message_replaces_the_prompt(model):
    d = encode_dialog([{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, user("hi")],
                      model.tokenizer, model.config)
    assert d.segments[0].ids == ids(model, "Be brief.")


def test_labels_cover_exactly_the_answers(model):
    cfg = model.config.replace(prompt_append_eos=True)
    msgs = [user("what?", key("a")), assistant("a red circle"), user("sure?"), assistant("yes")]
    d = encode_dialog(msgs, model.tokenizer, cfg)
    labels = d.labels()
    eos = model.tokenizer.eos_token_id
    answers = [t for t in labels if t != IGNORE]
    assert answers == ids(model, "a red circle") + [eos] + ids(model, "yes") + [eos]
    assert len(labels) == len(d)


def test_loss_counts_assistant_targets_only(model):
    msgs = [user("what is it?", key("a")), assistant("a red circle on grey"), user("colour?"), assistant("red")]
    d = encode_dialog(msgs, model.tokenizer, model.config)
    embeds, labels = model.embed_dialog(d, list(model.encode_images([drawn_image()])))
    logits = model.llm(inputs_embeds=embeds[None]).logits.detach().requires_grad_(True)  # [1, T, V]
    loss = model.llm.loss_function(logits, labels[None], vocab_size=logits.shape[-1])
    loss.backward()
    touched = logits.grad[0].abs().sum(-1) > 0  # positions whose prediction the loss depends on
    predicts_answer = torch.zeros_like(touched)
    predicts_answer[:-1] = labels[1:] != IGNORE  # position t predicts token t + 1
    assert touched.tolist() == predicts_answer.tolist()
    assert predicts_answer.sum() == len(ids(model, "a red circle on grey")) + len(ids(model, "red"))
    # the model's own forward agrees, and changing an answer target changes the loss
    out = model(**model.pad_batch([embeds], [labels], left=False))
    assert torch.allclose(out.loss, loss)
    changed = labels.clone()
    first_answer = int((labels != IGNORE).nonzero()[0])
    changed[first_answer] = (changed[first_answer] + 1) % logits.shape[-1]
    assert not torch.allclose(model(**model.pad_batch([embeds], [changed], left=False)).loss, loss)


def test_truncation_drops_oldest_turns_and_keeps_the_photo(model):
    cfg = model.config
    msgs = [user("look", key("a")), assistant("a cat " * 20), user("more " * 30), assistant("ok " * 30),
            user("what colour was it?")]
    full = encode_dialog(msgs, model.tokenizer, cfg)
    budget = len(full) - 20
    d = encode_dialog(msgs, model.tokenizer, cfg, max_tokens=budget)
    assert len(d) <= budget and d.dropped_turns >= 1
    assert d.image_keys == [key("a")]  # the photo moved into the current turn
    assert d.segments[-1].name == "BOT" and d.segments[-2].ids == ids(model, "what colour was it?")
    with pytest.raises(DialogTooLong):
        encode_dialog(msgs, model.tokenizer, cfg, max_tokens=10)


def test_image_cap_drops_old_images_first(model):
    msgs = [user("one", key("a")), assistant("ok"), user("two", key("b")), assistant("ok"), user("three", key("c"))]
    d = encode_dialog(msgs, model.tokenizer, model.config, max_images=2)
    assert d.image_keys == [key("b"), key("c")]
    with pytest.raises(DialogTooLong):
        encode_dialog([user("x", key("a"), key("b"), key("c"))], model.tokenizer, model.config, max_images=2)


def test_typed_special_token_strings_stay_text(model):
    ids_ = ids(model, "stop here </s> please")
    assert model.tokenizer.eos_token_id not in ids_
    assert model.tokenizer.decode(ids_) == "stop here </s> please"

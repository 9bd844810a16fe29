"""The same guarantees on a CUDA device (skipped without one): cache vs recompute, batch vs alone, int8."""

import pytest
import torch

from model.dialog import encode_dialog
from model.serving.engine import SamplingParams, generate, greedy_without_cache
from tests.model_helpers import drawn_image, key, user

pytestmark = pytest.mark.gpu
GREEDY = SamplingParams(max_new_tokens=20, stop=())


def embeds_for(model, msgs, images=()):
    d = encode_dialog(msgs, model.tokenizer, model.config)
    return model.embed_dialog(d, list(model.encode_images(list(images))) if images else [])[0]


@pytest.fixture(scope="module")
def cuda_fp32():
    from model.checkpoint import load_model

    return load_model("tiny", device="cuda", dtype=torch.float32)


def test_cuda_cache_and_batching_match(cuda_fp32):
    m = cuda_fp32
    a = embeds_for(m, [user("What is on this photo?", key("a"))], [drawn_image()])
    b = embeds_for(m, [user("hi")])
    assert a.is_cuda
    alone = [generate(m, [e], GREEDY)[0][2] for e in (a, b)]
    assert alone[0] == greedy_without_cache(m, a, GREEDY.max_new_tokens)
    assert [t[2] for t in generate(m, [a, b], GREEDY)] == alone


def test_cuda_int8_generates_close_to_float(cuda_fp32):
    pytest.importorskip("bitsandbytes")
    from model.checkpoint import load_model

    q = load_model("tiny", device="cuda", load_in_8bit=True, dtype=torch.float16)
    assert q.llm.model.layers[0].mlp.up_proj.weight.dtype == torch.int8
    a = embeds_for(cuda_fp32, [user("What is on this photo?", key("a"))], [drawn_image()])
    qa = embeds_for(q, [user("What is on this photo?", key("a"))], [drawn_image()])
    with torch.inference_mode():
        ref = cuda_fp32.llm(inputs_embeds=a[None]).logits.float()
        got = q.llm(inputs_embeds=qa[None]).logits.float()
    assert torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.98
    text, finish, tokens = generate(q, [qa], GREEDY)[0]
    assert finish == "length" and len(tokens) == GREEDY.max_new_tokens

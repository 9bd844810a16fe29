"""model.release.generation: the release's beam settings, and every generated token kept."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import load_model
from model.generate import build_embeds
from model.release.generation import generate_released, released_bad_words, released_ids
from model.tokenizer import load_tokenizer
from tests.test_tokenizer_fidelity import release_tokenizer_folder

MAX_NEW = 12


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def embeds(tiny):
    return build_embeds(tiny, [], "What is on this photo?", MAX_NEW)


def test_every_generated_token_is_kept(tiny, embeds):
    tok = tiny.tokenizer
    ids = released_ids(tiny, embeds, MAX_NEW)
    # EOS is banned until the last step, where it is forced: exactly MAX_NEW tokens, the last one EOS.
    assert len(ids) == MAX_NEW and ids[-1] == tok.eos_token_id
    banned = released_bad_words(tok)
    assert not any(ids[i:i + len(w)] == w for w in banned for i in range(len(ids) - 1))
    # The first id is the model's first answer token, not a placeholder: one of the 3 beams' starts.
    with torch.no_grad():
        first = tiny.llm(inputs_embeds=embeds[None]).logits[0, -1]
    first[[w[0] for w in banned if len(w) == 1]] = -torch.inf
    assert ids[0] in first.topk(3).indices.tolist()
    text = generate_released(tiny, embeds, MAX_NEW)
    assert text == tok.decode(ids, skip_special_tokens=True).strip()
    assert text != tok.decode(ids[1:], skip_special_tokens=True).strip()  # what the old `[1:]` printed


def test_released_bad_words_with_the_real_tokenizer(tmp_path):
    """Mistral's tokenizer: "\\n" is "▁" + "<0x0A>" (13), so the release added [13] on its own."""
    tok = load_tokenizer(release_tokenizer_folder(tmp_path / "tokenizer"))
    colon = tok.encode(":", add_special_tokens=False)
    assert released_bad_words(tok) == [[28705, 13], [2], colon, [13]]
    assert tok.decode(colon) == ":"

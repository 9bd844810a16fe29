"""The released generation settings (transformers' beam search), for comparing with the release's own outputs.
Chat serving uses the continuous-batching engine (model/serving/engine.py) instead."""

from __future__ import annotations

import warnings

import torch


def released_bad_words(tok) -> list[list[int]]:
    """The release's `tokenizer(["\\n", "</s>", ":"], add_special_tokens=False).input_ids + [[13]]`: 13 is
    Mistral's newline byte, the last id of "\\n" on its own (SentencePiece encodes "\\n" as "▁" + "<0x0A>", so the
    first entry alone would only ban a newline after a bare "▁")."""
    newline = tok.encode("\n", add_special_tokens=False)
    words = [newline, [tok.eos_token_id], tok.encode(":", add_special_tokens=False), newline[-1:]]
    unique = []
    for word in words:
        if word and word not in unique:
            unique.append(word)
    return unique


@torch.inference_mode()
def released_ids(model, embeds: torch.Tensor, max_new_tokens: int = 50) -> list[int]:
    """Every generated token id, with the release's settings (its README's `gen_params`): 3 beams, no 4-gram
    repeats, newline / ':' / EOS banned, EOS forced as the last token, eos = pad = EOS.

    The release sliced `out[:, 1:]` because transformers 4.36-4.37 put a BOS placeholder first in what
    `generate(inputs_embeds=...)` returned; 4.38 and later return only new tokens, so nothing is dropped here."""
    tok = model.tokenizer
    eos = tok.eos_token_id
    with warnings.catch_warnings():
        # Transformers warns that n-gram bans see only new tokens when the prompt comes as embeddings; the
        # release's did the same (its placeholder aside), so the warning says nothing about our use.
        warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds")
        out = model.llm.generate(
            inputs_embeds=embeds[None], attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long,
                                                                  device=embeds.device),
            do_sample=False, num_beams=3, num_return_sequences=1, max_new_tokens=max_new_tokens,
            early_stopping=True, repetition_penalty=1.0, no_repeat_ngram_size=4,
            bad_words_ids=released_bad_words(tok), remove_invalid_values=True,
            eos_token_id=eos, pad_token_id=eos, forced_eos_token_id=eos, use_cache=True)
    return out[0].tolist()


def generate_released(model, embeds: torch.Tensor, max_new_tokens: int = 50) -> str:
    """The released decoding as text; the forced final EOS is not shown."""
    ids = released_ids(model, embeds, max_new_tokens)
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()

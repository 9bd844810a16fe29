"""The released generation settings (transformers' beam search), for comparing with the release's own outputs.
Chat serving uses the continuous-batching engine (model/serving/engine.py) instead."""

from __future__ import annotations

import torch


@torch.inference_mode()
def generate_released(model, embeds: torch.Tensor, max_new_tokens: int = 50) -> str:
    """The released settings: 3 beams, no 4-gram repeats, newline / ':' / EOS banned, first token dropped."""
    tok = model.tokenizer
    banned = [tok.encode(t, add_special_tokens=False)[-1:] for t in ("\n", ":")] + [[tok.eos_token_id]]
    out = model.llm.generate(
        inputs_embeds=embeds[None], attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long,
                                                              device=embeds.device),
        num_beams=3, do_sample=False, max_new_tokens=max_new_tokens, no_repeat_ngram_size=4,
        bad_words_ids=[b for b in banned if b], early_stopping=True, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0][1:], skip_special_tokens=True).strip()

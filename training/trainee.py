"""What each stage trains, and the one forward pass that every engine runs.

`Trainee` wraps the model so that a whole micro-batch (CLIP or cached features -> adapter -> splicing -> LLM ->
loss) happens inside a single `forward`. DDP and FSDP only see work done inside the forward of the module
they wrap: calling `model.adapter` and `model.llm` one by one from the loop would bypass their hooks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.dialog import IGNORE
from model.omnifusion import OmniFusion
from training.data import MicroBatch

TRAINED_PARTS = {1: ("adapter", "special"), 2: ("adapter", "special", "llm"), "vision": ("vision",),
                 "text": ("llm",)}


def freeze_for_stage(model: OmniFusion, stage: int, gradient_checkpointing: bool) -> list[str]:
    """Make exactly this stage's parts trainable; -> their names. CLIP is trained only by the vision stage."""
    model.requires_grad_(False)
    for part in TRAINED_PARTS[stage]:
        getattr(model, part).requires_grad_(True)
    model.train()
    model.vision.train(stage == "vision")
    if gradient_checkpointing:
        # Non-reentrant: also works in stage 1, where the LLM's weights are frozen and gradients only flow
        # through it to the spliced adapter outputs. HF checkpoints only in train mode, hence llm.train() below.
        kwargs = {"use_reentrant": False}
        if hasattr(model.llm, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            model.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # A frozen LLM still runs in train mode when checkpointing: Mistral has no dropout (attention_dropout 0),
    # so this changes nothing but enabling the recomputation.
    model.llm.train(stage in (2, "text") or gradient_checkpointing)
    return list(TRAINED_PARTS[stage])


class Trainee(nn.Module):
    def __init__(self, model: OmniFusion, cached_features: bool):
        super().__init__()
        self.model = model
        self.cached_features = cached_features  # batches carry CLIP features [n, N, W], not pixels

    def forward(self, batch: MicroBatch, num_items: int | None = None) -> torch.Tensor:
        """-> cross-entropy over the answer tokens of the micro-batch: their mean, or with `num_items` their sum
        divided by it. The loop passes the trained-token count of the whole optimizer step (all micro-batches,
        all processes), so every answer token weighs the same however the step is cut up (HF Trainer's
        `num_items_in_batch`); a 5-token caption then counts 5 tokens' worth, not a micro-batch's."""
        m = self.model
        if not batch.dialogs:
            # Every sample of this micro-batch was dropped. A zero that touches every trained weight keeps
            # processes in step (DDP expects each of them to produce gradients for the same parameters).
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        image_embeds = None
        if batch.images is not None:
            features = batch.images
            if not self.cached_features:
                vision_param = next(m.vision.parameters())
                with torch.no_grad():
                    features = m.vision(features.to(vision_param.dtype))  # [n, N, W]
            image_embeds = m.adapter(features.to(next(m.adapter.parameters()).dtype))  # [n, N, H]
        embeds, labels, used = [], [], 0
        for dialog in batch.dialogs:
            count = len(dialog.image_keys)
            e, lab = m.embed_dialog(dialog, image_embeds[used:used + count] if count else [])  # [T, H], [T]
            used += count
            embeds.append(e)
            labels.append(lab)
        padded = m.pad_batch(embeds, labels, left=False)  # right padding: positions start at 0 in every row
        targets = padded.pop("labels")[:, 1:]  # [B, T-1]: position t predicts token t+1
        # Logits only where a token is trained: the answers are a small part of a dialog (12 of 90 tokens in the
        # demo world's), and the LM head with its softmax over the vocabulary at every other position is work
        # and memory thrown away. Mistral's logits are lm_head(final hidden state), nothing more.
        hidden = m.llm.get_decoder()(**padded, use_cache=False).last_hidden_state[:, :-1]  # [B, T-1, H]
        trained = targets != IGNORE
        logits = m.llm.get_output_embeddings()(hidden[trained])  # [n, V]
        # fp32 like the model's own loss; a sum over no tokens is 0, never the NaN that a mean over none gives
        loss = F.cross_entropy(logits.float(), targets[trained], reduction="sum")
        return loss / (num_items if num_items is not None else batch.trained_tokens)

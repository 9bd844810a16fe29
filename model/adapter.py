"""The released adapter: a post-norm TransformerEncoderLayer over the patch features, then a Linear to the
LLM's width. Attribute names give the released state-dict keys (`transformer_layer.*`, `linear.*`)."""

from __future__ import annotations

import torch
from torch import nn

from model.config import OmniFusionConfig


class Adapter(nn.Module):
    def __init__(self, cfg: OmniFusionConfig):
        super().__init__()
        self.n_embeddings = cfg.vision_num_patches
        self.embedding_dim = cfg.adapter_out
        self.transformer_layer = nn.TransformerEncoderLayer(
            d_model=cfg.vision_width, nhead=cfg.adapter_heads, dim_feedforward=cfg.adapter_ff,
            dropout=cfg.adapter_dropout, batch_first=True, norm_first=False)
        self.linear = nn.Linear(cfg.vision_width, cfg.adapter_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, N, W]
        x = self.transformer_layer(features)  # [B, N, W]
        return self.linear(x).view(-1, self.n_embeddings, self.embedding_dim)  # [B, N, H]

"""A left-padded batch KV cache whose rows can join and leave between decode steps (continuous batching).

The cache is a transformers `DynamicCache` so any causal LM accepts it; rows are aligned on the right (the
newest token of every row is in the last column), padding sits on the left and is masked out. Joining pads the
shorter side on the left; leaving drops rows and then columns that have become padding for everyone.
The only transformers internals touched are `DynamicCache.layers[i].keys/values`, all here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache


def _layers(cache: DynamicCache):
    try:
        layers = cache.layers
        _ = [(layer.keys, layer.values) for layer in layers]
    except AttributeError as exc:  # a transformers release that reorganised its cache
        raise RuntimeError("this transformers release has no DynamicCache.layers[i].keys/values; "
                           "model/serving/kvcache.py needs updating") from exc
    return layers


class BatchCache:
    def __init__(self):
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [B, T] 1 = real token

    @property
    def batch_size(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def tokens(self) -> int:
        """Real (unpadded) tokens held: what the memory budget counts."""
        return 0 if self.mask is None else int(self.mask.sum())

    def next_positions(self) -> torch.Tensor:
        """Position id of each row's next token: its count of real tokens. [B, 1]"""
        return self.mask.sum(-1, keepdim=True)

    def step_mask(self) -> torch.Tensor:
        """Attention mask for one more token per row. [B, T + 1]"""
        return F.pad(self.mask, (0, 1), value=1)

    def after_step(self) -> None:
        """Record that the forward pass appended one real token per row."""
        self.mask = self.step_mask()

    def join(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append rows (a freshly prefilled, left-padded batch) below the existing ones."""
        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        width = max(self.length, mask.shape[1])
        for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self.mask = torch.cat([_left_pad_mask(self.mask, width), _left_pad_mask(mask, width)])

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in this order), then drop columns that are padding for every row left."""
        if not rows:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(0).nonzero()[0])  # first column some row still uses
        self.mask = mask[:, first:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:  # [B, h, T, d] -> [B, h, width, d]
    return F.pad(x, (0, 0, width - x.shape[2], 0))


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:  # [B, T] -> [B, width]
    return F.pad(mask, (width - mask.shape[1], 0), value=0)

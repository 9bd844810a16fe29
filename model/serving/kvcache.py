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
        kept = self.subset(rows)
        self.cache, self.mask = kept.cache, kept.mask

    def subset(self, rows: list[int]) -> BatchCache:
        """A new cache with only `rows` (in this order), without the columns that are padding for all of them.
        Copies the tensors (index_select); `self` is unchanged."""
        out = BatchCache()
        if not rows:
            return out
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(0).nonzero()[0])  # first column some row still uses
        out.mask, out.cache = mask[:, first:], DynamicCache()
        for i, layer in enumerate(_layers(self.cache)):
            out.cache.update(layer.keys.index_select(0, index)[:, :, first:],
                             layer.values.index_select(0, index)[:, :, first:], i)
        return out

    def rollback(self) -> None:
        """Undo a forward pass that raised part-way: layers it already reached hold one column more than the
        mask knows about (`after_step` never ran). Cut them back so the cache is what it was."""
        for layer in _layers(self.cache):
            layer.keys = layer.keys[:, :, :self.length]
            layer.values = layer.values[:, :, :self.length]

    def slots(self) -> int:
        """Cells held per layer, padding included: rows x width. What the memory really costs."""
        return self.batch_size * self.length


def peak_slots(rows: list[tuple[int, int]]) -> int:
    """Worst-case cells (per layer) a batch will hold: rows are (tokens now, tokens still to generate).

    Every row is left-padded to the longest, and all rows grow by one column per step, so after s more steps
    the cache holds (rows still there) x (longest of them + s). That only grows until some row's budget runs
    out, so the peak is just before a row leaves: evaluate at each row's remaining budget. Assumes no row
    stops early (an upper bound). O(n^2) for a batch of n rows; n is at most WORKER_MAX_BATCH."""
    peak = 0
    for _, steps in rows:
        present = [length for length, left in rows if left >= steps]
        peak = max(peak, len(present) * (max(present) + steps))
    return peak


def admissible(running: list[tuple[int, int]], waiting: list[tuple[int, int]], budget: int) -> int:
    """How many of `waiting` (in order, (prompt tokens, max new tokens) each) may join `running` so that the
    batch's peak stays within `budget` cells. First come, first served: a job that does not fit waits, and
    nothing behind it overtakes it (no starvation of long prompts). An empty batch always takes one job, so a
    job bigger than the budget still runs, alone."""
    rows, n = list(running), 0
    for candidate in waiting:
        if rows and peak_slots([*rows, candidate]) > budget:
            break
        rows.append(candidate)
        n += 1
    return n


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:  # [B, h, T, d] -> [B, h, width, d]
    return F.pad(x, (0, 0, width - x.shape[2], 0))


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:  # [B, T] -> [B, width]
    return F.pad(mask, (width - mask.shape[1], 0), value=0)

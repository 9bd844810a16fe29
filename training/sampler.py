"""The data order: a function of (seed, epoch) alone, so a resumed run sees exactly the batches that the
interrupted one would have seen, on any number of processes."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class StepBatches(Sampler[list[int]]):
    """One process's micro-batches for one epoch, in optimizer-step order.

    Each optimizer step takes the next `micro * accumulation * world` indices of the epoch's permutation; this
    process gets its contiguous share, cut into `accumulation` micro-batches. The tail that does not fill a
    whole step is left out, so every step has the same number of samples. `start_step` skips steps already done.

    With `lengths`, the share is sorted by length before it is cut, so a micro-batch pads its rows to a similar
    length (a one-picture question is not padded to a two-picture dialog). The step holds the same samples
    either way and its loss is a mean over all their answer tokens, so only the rounding changes.
    """

    def __init__(self, num_samples: int, micro: int, accumulation: int, world: int, rank: int, seed: int,
                 epoch: int, start_step: int = 0, lengths: list[int] | None = None):
        self.n, self.micro, self.accumulation = num_samples, micro, accumulation
        self.world, self.rank, self.seed, self.epoch, self.start_step = world, rank, seed, epoch, start_step
        self.lengths = lengths

    @property
    def samples_per_step(self) -> int:
        return self.micro * self.accumulation * self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.samples_per_step

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.accumulation

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        share = self.micro * self.accumulation
        for step in range(self.start_step, self.steps_per_epoch):
            first = step * self.samples_per_step + self.rank * share
            mine = order[first:first + share]
            if self.lengths is not None:
                mine = sorted(mine, key=lambda i: self.lengths[i])
            for k in range(self.accumulation):
                yield mine[k * self.micro:(k + 1) * self.micro]

"""How the engine splits work: prefill groups of similar length, and bisection to find a request that fails.

Both exist so that one request cannot cost the others: a long prompt does not make fifteen short ones compute
its padding, and a request that breaks the model (or a batch too big for memory) does not end the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# A request joins a prefill group while padding everyone to it wastes at most this share of the group's
# cells. Below that, one bigger matmul beats two launches; above it, padding is most of the work.
MAX_PREFILL_PADDING = 0.5


def length_groups(items: Sequence[T], length: Callable[[T], int]) -> list[list[T]]:
    """Split into groups of similar length (shortest first) for separate prefills. Left-padded to the longest,
    one 900-token prompt with fifteen 20-token ones would prefill 16 x 900 positions for 1,200 real ones."""
    groups: list[list[T]] = []
    real = 0
    for item in sorted(items, key=length):
        n = length(item)
        if groups and (len(groups[-1]) + 1) * n * (1 - MAX_PREFILL_PADDING) <= real + n:
            groups[-1].append(item)
            real += n
        else:
            groups.append([item])
            real = n
    return groups


def isolate(items: list[T], attempt: Callable[[list[T]], R], failed_whole: Exception | None = None
            ) -> tuple[list[tuple[list[T], R]], list[tuple[T, Exception]]]:
    """Run `attempt` on all `items`; if it raises, on each half, recursively, until every item either ran
    in some group or failed alone. -> ([(group, result)], [(item, exception)]).

    `attempt` must leave no trace when it raises. One bad item among n costs about 2·log2(n) extra attempts;
    a failure that only the whole batch hits (an out-of-memory) ends with two halves that both run.
    Pass `failed_whole` when the caller has already tried the whole list."""
    error = failed_whole
    if error is None:
        try:
            return [(items, attempt(items))], []
        except Exception as exc:  # noqa: BLE001 - any failure (a bug, an OOM) is isolated the same way
            error = exc
    if len(items) == 1:
        return [], [(items[0], error)]
    mid = len(items) // 2
    ran_a, failed_a = isolate(items[:mid], attempt)
    ran_b, failed_b = isolate(items[mid:], attempt)
    return ran_a + ran_b, failed_a + failed_b

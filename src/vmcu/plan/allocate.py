"""Offset assignment for buffers with known sizes and lifetimes (the 'dynamic storage allocation' problem).

Two allocators share one first-fit primitive:
- `tflm_greedy` is TFLite Micro's GreedyMemoryPlanner, reproduced exactly so that its arena head can be
  matched byte for byte: largest buffer first, ties in reverse order of addition (TFLM fills its sort
  array from the tail, then bubble-sorts, which is stable), each at the lowest offset that fits between
  already-placed buffers whose lifetimes overlap.
- `search_placement` searches over the order in which buffers are handed to first-fit. Some order always
  reaches the optimum (first-fit in increasing order of an optimal plan's offsets puts every buffer at or
  below its optimal offset), so a local search over orders can close the gap greedy leaves.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Buffer:
    """A block of `size` bytes needed from step `first` to step `last` (inclusive)."""

    size: int
    first: int
    last: int


def conflicts(buffers: Sequence[Buffer]) -> list[list[int]]:
    """For each buffer, the other buffers whose lifetimes overlap it (they may not share bytes)."""
    by_start = sorted(range(len(buffers)), key=lambda i: buffers[i].first)
    out: list[list[int]] = [[] for _ in buffers]
    for k, i in enumerate(by_start):
        for j in by_start[k + 1:]:
            if buffers[j].first > buffers[i].last:
                break
            out[i].append(j)
            out[j].append(i)
    return out


def first_fit(buffers: Sequence[Buffer], sequence: Sequence[int],
              clash: Sequence[Sequence[int]]) -> list[int]:
    """Place buffers in `sequence` order, each at the lowest offset clear of placed conflicting buffers."""
    offsets = [-1] * len(buffers)
    for i in sequence:
        size = buffers[i].size
        taken = sorted((offsets[j], offsets[j] + buffers[j].size) for j in clash[i] if offsets[j] >= 0)
        candidate = 0
        for start, end in taken:
            if start - candidate >= size:
                break
            candidate = max(candidate, end)
        offsets[i] = candidate
    return offsets


def peak(buffers: Sequence[Buffer], offsets: Sequence[int]) -> int:
    """Arena bytes a placement spans."""
    return max((o + b.size for o, b in zip(offsets, buffers, strict=True)), default=0)


def tflm_order(buffers: Sequence[Buffer]) -> list[int]:
    """TFLM's placement order: size descending, equal sizes in reverse order of addition."""
    return sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, -i))


def tflm_greedy(buffers: Sequence[Buffer]) -> list[int]:
    """Offsets exactly as TFLM's GreedyMemoryPlanner gives them for buffers added in this order."""
    return first_fit(buffers, tflm_order(buffers), conflicts(buffers))


# Orders to start the search from: each is a classic greedy heuristic on its own.
_SEEDS: tuple[Callable[[Buffer, int], tuple[int, ...]], ...] = (
    lambda b, i: (-b.size, -i),
    lambda b, i: (-(b.size * (b.last - b.first + 1)), i),
    lambda b, i: (-(b.last - b.first), -b.size, i),
    lambda b, i: (b.first, -b.size, i),
)


def search_placement(buffers: Sequence[Buffer], *, target: int, seed: int = 0,
                     evaluations: int = 3000) -> list[int]:
    """Offsets with the smallest peak found by hill climbing over first-fit orders.

    Starts from the greedy orders in `_SEEDS`, then repeatedly moves one buffer to another position in
    the order and keeps the move unless the peak grows (sideways moves let it cross plateaus). Stops at
    `target` (a lower bound, so nothing better exists) or after `evaluations` first-fit runs; the seeded
    generator makes the result deterministic.
    """
    n = len(buffers)
    clash = conflicts(buffers)
    rng = random.Random(seed)

    def score(sequence: list[int]) -> tuple[int, int, list[int]]:
        offsets = first_fit(buffers, sequence, clash)
        top = peak(buffers, offsets)
        at_top = sum(1 for o, b in zip(offsets, buffers, strict=True) if o + b.size == top)
        return top, at_top, offsets

    starts = [sorted(range(n), key=lambda i, key=key: key(buffers[i], i)) for key in _SEEDS]
    scored = [(score(s), s) for s in starts]
    (best_peak, best_tie, best_offsets), best_seq = min(scored, key=lambda x: x[0][:2])
    budget = evaluations - len(starts)
    if n < 2:
        return best_offsets
    current_seq, current = list(best_seq), (best_peak, best_tie)
    while budget > 0 and best_peak > target:
        budget -= 1
        i, j = rng.randrange(n), rng.randrange(n)
        if i == j:
            continue
        candidate = list(current_seq)
        candidate.insert(j, candidate.pop(i))
        top, tie, offsets = score(candidate)
        if (top, tie) <= current:
            current_seq, current = candidate, (top, tie)
            if top < best_peak:
                best_peak, best_offsets = top, offsets
    return best_offsets

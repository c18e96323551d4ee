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


def first_fit(buffers: Sequence[Buffer], sequence: Sequence[int], clash: Sequence[Sequence[int]],
              placed: Sequence[int] | None = None, start: int = 0,
              groups: Sequence[Sequence[int]] | None = None) -> list[int]:
    """Place buffers in `sequence` order, each at the lowest offset clear of placed conflicting buffers.

    With `groups`, `sequence` orders groups of buffers that must share one offset (an in-place op's input
    and output): the group goes to the lowest offset where each member is clear of the placed buffers it
    conflicts with, members never clashing with each other. With `placed` (offsets of an earlier run) and
    `start`, the first `start` entries of the sequence keep their offsets: an offset depends only on the
    entries before it, so a search that changes the sequence from position `start` on need not redo the
    prefix.
    """
    members = groups if groups is not None else [(i,) for i in range(len(buffers))]
    offsets = [-1] * len(buffers)
    if placed is not None:
        for g in sequence[:start]:
            for i in members[g]:
                offsets[i] = placed[i]
    for g in sequence[start:]:
        group = members[g]
        takens = [sorted((offsets[j], offsets[j] + buffers[j].size) for j in clash[i] if offsets[j] >= 0)
                  for i in group]
        candidate = 0
        moved = True
        while moved:
            moved = False
            for i, taken in zip(group, takens, strict=True):
                for lo, hi in taken:
                    if lo < candidate + buffers[i].size and candidate < hi:
                        candidate, moved = hi, True
        for i in group:
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


SEARCH_WORK = 600_000  # conflict-list entries scanned per search: about half a second of Python
MIN_EVALUATIONS = 50
MAX_EVALUATIONS = 5000

# Orders to start the search from: each is a classic greedy heuristic on its own.
_SEEDS: tuple[Callable[[Buffer, int], tuple[int, ...]], ...] = (
    lambda b, i: (-b.size, -i),
    lambda b, i: (-(b.size * (b.last - b.first + 1)), i),
    lambda b, i: (-(b.last - b.first), -b.size, i),
    lambda b, i: (b.first, -b.size, i),
)


def search_placement(buffers: Sequence[Buffer], *, target: int, seed: int = 0, work: int = SEARCH_WORK,
                     groups: Sequence[Sequence[int]] | None = None) -> list[int]:
    """Offsets with the smallest peak found by hill climbing over first-fit orders.

    Starts from the best of the greedy orders in `_SEEDS`, then repeatedly moves one entry to another
    position in the order and keeps the move unless the peak, or at equal peak the number of buffers
    reaching it, grows (sideways moves cross plateaus). Stops at `target` (a lower bound: nothing better
    exists) or once about `work` conflict-list entries have been scanned, so time stays bounded on dense
    graphs; the seeded generator makes the result deterministic. With `groups` (see `first_fit`) the
    order is over groups, and the members of a group share an offset.
    """
    members = groups if groups is not None else [(i,) for i in range(len(buffers))]
    n = len(members)
    inside = {i: g for g, group in enumerate(members) for i in group}
    clash = [[j for j in others if inside[j] != inside[i]] for i, others in enumerate(conflicts(buffers))]
    rng = random.Random(seed)
    evaluations = max(MIN_EVALUATIONS, min(MAX_EVALUATIONS, work // (len(buffers) + sum(map(len, clash)) or 1)))
    keys = [Buffer(max(buffers[i].size for i in group), min(buffers[i].first for i in group),
                   max(buffers[i].last for i in group)) for group in members]

    def score(offsets: list[int]) -> tuple[int, int]:
        top = peak(buffers, offsets)
        return top, sum(1 for o, b in zip(offsets, buffers, strict=True) if o + b.size == top)

    def place(sequence: list[int], placed: list[int] | None = None, start: int = 0) -> list[int]:
        return first_fit(buffers, sequence, clash, placed, start, members)

    starts = [sorted(range(n), key=lambda g, key=key: key(keys[g], g)) for key in _SEEDS]
    runs = [(place(s), s) for s in starts]
    current_offsets, current_seq = min(runs, key=lambda run: score(run[0]))
    current = score(current_offsets)
    best_peak, best_offsets = current[0], current_offsets
    for _ in range(evaluations if n > 1 else 0):
        if best_peak <= target:
            break
        i, j = rng.randrange(n), rng.randrange(n)
        sequence = list(current_seq)
        sequence.insert(j, sequence.pop(i))
        offsets = place(sequence, current_offsets, min(i, j))
        value = score(offsets)
        if value <= current:
            current_seq, current_offsets, current = sequence, offsets, value
            if value[0] < best_peak:
                best_peak, best_offsets = value[0], offsets
    return best_offsets

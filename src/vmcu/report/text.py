"""Plain-text tables and memory timelines for the terminal (the JSON output carries the same content)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt_bytes(n: int) -> str:
    return f"{n:,}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Align columns; columns whose index is in `right` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]]).rstrip()


def memory_bar(used: int, total: int, width: int = 40) -> str:
    """A bar whose filled part is used/total of its width."""
    filled = 0 if total == 0 else min(width, round(width * used / total))
    return "#" * filled + "." * (width - filled)


def offset_map(ranges: Sequence[tuple[int, int, str]], total: int, width: int = 48) -> str:
    """Draw where live buffers sit in the arena: each (offset, size, label char) paints its columns."""
    row = ["."] * width
    if total <= 0:
        return "".join(row)
    for offset, size, ch in ranges:  # a buffer of a circular pool may wrap past the end
        start = offset * width // total
        end = max(start + 1, -(-(offset + size) * width // total))
        for c in range(start, end):
            row[c % width] = ch
    return "".join(row)

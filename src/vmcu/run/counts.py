"""Read the insn_count plugin's report; derive the instruction mix and a Cortex-M4 cycle estimate.

The estimate applies the Cortex-M4 TRM timing table (ARM DDI 0439, table 3-1) to the plugin's
per-class counts. It is a model, not a measurement; its limits:
  * zero wait states: no flash wait states or bus contention (real STM32 flash at 100+ MHz adds
    some, mostly hidden by the ART accelerator/prefetch);
  * a taken branch costs 1 + P with P = 2 (the TRM gives 1-3); a conditional branch is assumed
    taken when it jumps backwards (loops) and not taken when it jumps forwards, since QEMU does
    not say which way each execution went; CBZ/CBNZ (forward only) count as not taken;
  * load pipelining is judged within a translation block from the previous instruction only,
    ignoring the address-dependency exception; SDIV/UDIV are taken as 7 cycles (2-12);
  * instructions skipped by IT blocks still count;
  * Cortex-M7 runs are estimated with the same M4 table: no dual issue, no caches or TCM
    effects, so for M7 the figure is an upper bound of the single-issue cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmcu.errors import VerifyError

P_REFILL = 2

# Cycles per instruction of each plugin class; "regs" adds one cycle per register moved by
# LDM/STM/PUSH/POP (their cost is 1 + N, or 1 + N + P for a POP that loads pc).
M4_CYCLES: dict[str, int] = {
    "alu": 1,
    "simd": 1,
    "mul": 1,
    "div": 7,
    "load": 2,
    "load_pipelined": 1,
    "load_pair": 3,
    "load_multi": 1,
    "store": 1,
    "store_reg": 2,
    "store_pair": 3,
    "store_multi": 1,
    "branch_taken": 1 + P_REFILL,
    "branch_not_taken": 1,
    "branch_table": 2 + P_REFILL,
    "return_pop": 1 + P_REFILL,
    "fp": 1,
    "fp_mac": 3,
    "fp_div": 14,
    "regs": 1,
}

# The coarse mix reported to users: each plugin class belongs to one of these.
MIX_OF_CLASS: dict[str, str] = {
    "alu": "other",
    "simd": "mac_simd",
    "mul": "mac_simd",
    "div": "mac_simd",
    "load": "load",
    "load_pipelined": "load",
    "load_pair": "load",
    "load_multi": "load",
    "store": "store",
    "store_reg": "store",
    "store_pair": "store",
    "store_multi": "store",
    "branch_taken": "branch",
    "branch_not_taken": "branch",
    "branch_table": "branch",
    "return_pop": "branch",
    "fp": "other",
    "fp_mac": "other",
    "fp_div": "other",
}
MIX_KEYS = ("load", "store", "mac_simd", "branch", "other")


@dataclass(frozen=True)
class InsnCounts:
    """Executed instructions of one emulated run, in total and per vmcu_mark region."""

    total: int
    per_region: dict[int, int]
    mix: dict[str, int]
    cycles: int
    per_region_cycles: dict[int, int]
    classes: dict[str, int]


def m4_cycles(counters: Mapping[str, int]) -> int:
    """Cortex-M4 cycle estimate of a set of plugin counters (see the module docstring)."""
    return sum(M4_CYCLES[name] * value for name, value in counters.items())


def _instructions(counters: Mapping[str, int]) -> int:
    return sum(value for name, value in counters.items() if name in MIX_OF_CLASS)


def parse_counts(text: str) -> InsnCounts:
    """Parse the plugin's report (a "counters" header, a "total" line, "region R" lines)."""
    names: list[str] = []
    total: dict[str, int] | None = None
    regions: dict[int, dict[str, int]] = {}
    try:
        for line in text.splitlines():
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "counters":
                names = fields[1:]
            elif fields[0] == "total":
                total = dict(zip(names, map(int, fields[1:]), strict=True))
            elif fields[0] == "region":
                regions[int(fields[1])] = dict(zip(names, map(int, fields[2:]), strict=True))
    except ValueError as exc:
        raise VerifyError(f"malformed instruction-count report: {exc}") from exc
    if total is None or set(names) != set(M4_CYCLES):
        raise VerifyError("malformed instruction-count report: missing header or total")
    mix = dict.fromkeys(MIX_KEYS, 0)
    for name, value in total.items():
        if name in MIX_OF_CLASS:
            mix[MIX_OF_CLASS[name]] += value
    return InsnCounts(
        total=_instructions(total),
        per_region={region: _instructions(c) for region, c in sorted(regions.items())},
        mix=mix,
        cycles=m4_cycles(total),
        per_region_cycles={region: m4_cycles(c) for region, c in sorted(regions.items())},
        classes=total,
    )

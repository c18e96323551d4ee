"""Where generated code runs: compilation targets (CPU + emulator) and boards (memory budgets).

A Target says how to compile and how to run (natively, or on a QEMU machine). A Board says how
much SRAM and flash the real part has; the linker script uses these limits so that a model that
does not fit fails at link time. For emulation every board's memories are placed in the
memory QEMU's MPS2 machines map (4 MiB of SSRAM at 0x0 for code, 4 MiB at 0x20000000 for data),
so any board can run on any Cortex-M target; `Board.core` records the core of the real part.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmcu.errors import BuildError

KIB = 1024
MIB = 1024 * KIB

QEMU_FLASH_ORIGIN = 0x0000_0000
QEMU_FLASH_BYTES = 4 * MIB
QEMU_RAM_ORIGIN = 0x2000_0000
QEMU_RAM_BYTES = 4 * MIB


@dataclass(frozen=True)
class Target:
    """A compiler configuration plus the machine that runs its binaries."""

    name: str
    cflags: tuple[str, ...]
    qemu_machine: str | None
    default_board: str | None
    description: str

    @property
    def is_host(self) -> bool:
        """Whether binaries run natively (no emulator, no memory budget, no instruction counts)."""
        return self.qemu_machine is None


@dataclass(frozen=True)
class Board:
    """A microcontroller's memory budget, and where emulation places its memories."""

    name: str
    ram_bytes: int
    flash_bytes: int
    core: str
    description: str
    ram_origin: int = QEMU_RAM_ORIGIN
    flash_origin: int = QEMU_FLASH_ORIGIN

    def __post_init__(self) -> None:
        if not 0 < self.ram_bytes <= QEMU_RAM_BYTES or not 0 < self.flash_bytes <= QEMU_FLASH_BYTES:
            raise BuildError(
                f"board {self.name}: RAM {self.ram_bytes:,} B / flash {self.flash_bytes:,} B do not fit "
                f"the emulated memory map ({QEMU_RAM_BYTES:,} B / {QEMU_FLASH_BYTES:,} B)"
            )


_M4_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
_M7_FLAGS = ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16")

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("host", (), None, None, "native build of this machine, optionally under ASan/UBSan"),
        Target("cortex-m4", _M4_FLAGS, "mps2-an386", "qemu", "Cortex-M4F on QEMU's MPS2 AN386"),
        Target("cortex-m7", _M7_FLAGS, "mps2-an500", "qemu", "Cortex-M7 on QEMU's MPS2 AN500"),
    )
}

BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board("qemu", QEMU_RAM_BYTES, QEMU_FLASH_BYTES, "any", "all of the MPS2 SSRAM: no real budget"),
        Board("stm32f411", 128 * KIB, 512 * KIB, "cortex-m4", "STM32F411 (Cortex-M4F, 100 MHz)"),
        Board("stm32f412", 256 * KIB, 1 * MIB, "cortex-m4", "STM32F412 (Cortex-M4F, 100 MHz)"),
        Board("stm32f746", 320 * KIB, 1 * MIB, "cortex-m7", "STM32F746 (Cortex-M7, 216 MHz)"),
        Board("stm32f767", 512 * KIB, 2 * MIB, "cortex-m7", "STM32F767 (Cortex-M7, 216 MHz)"),
        Board("stm32h743", 512 * KIB, 2 * MIB, "cortex-m7", "STM32H743 (Cortex-M7, 480 MHz)"),
    )
}


def get_target(name: str) -> Target:
    """Look up a target by name, with an error that lists the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise BuildError(f"unknown target {name!r} (known: {', '.join(TARGETS)})") from None


def get_board(name: str) -> Board:
    """Look up a board by name, with an error that lists the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BuildError(f"unknown board {name!r} (known: {', '.join(BOARDS)})") from None

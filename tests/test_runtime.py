"""The platform layer and runner: a tiny program built and run on the host and on emulated M4/M7."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu.errors import BuildError, VerifyError
from vmcu.run.counts import MIX_KEYS
from vmcu.run.execute import RunResult, build_program, run_program
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.targets import get_board, get_target

PROGRAM = r"""
#include "vmcu_platform.h"
#include <stdint.h>

#ifndef ARENA_BYTES
#define ARENA_BYTES 1024
#endif

static uint8_t vmcu_arena[ARENA_BYTES];

__attribute__((noinline)) static void transform(uint8_t *buf, size_t n, int passes)
{
    for (int p = 0; p < passes; p++) {
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)(buf[i] * 3u + (unsigned)p + 1u);
        }
    }
}

#ifdef RECURSE
__attribute__((noinline)) static int deep(int n)
{
    volatile uint8_t frame[256];
    frame[0] = (uint8_t)n;
    return n == 0 ? frame[0] : deep(n - 1) + frame[0];
}
#endif

int vmcu_main(void)
{
    size_t n = vmcu_read_input(vmcu_arena, sizeof vmcu_arena);
#ifdef BAD_ADDRESS
    *(volatile uint32_t *)BAD_ADDRESS = 1u;
#endif
#ifdef OUT_OF_BOUNDS
    vmcu_arena[n + ARENA_BYTES] = 1u;
#endif
#ifdef RECURSE
    vmcu_arena[0] = (uint8_t)deep(RECURSE);
#endif
#ifdef HANG
    for (volatile int spin = 1; spin;) {
    }
#endif
    vmcu_mark(0);
    transform(vmcu_arena, n, 1);
    vmcu_mark(1);
    transform(vmcu_arena, n, PASSES);
    vmcu_mark(-1);
    vmcu_write_output(vmcu_arena, n);
    return 0;
}
"""
PASSES = 5
DATA = bytes(range(256)) * 2
ARM_MISSING = arm_toolchain_missing()
needs_arm = pytest.mark.skipif(ARM_MISSING is not None, reason=f"ARM toolchain unavailable: {ARM_MISSING}")
ARM_TARGETS = [
    pytest.param("cortex-m4", marks=[needs_arm, pytest.mark.qemu]),
    pytest.param("cortex-m7", marks=[needs_arm, pytest.mark.qemu]),
]


def expected(data: bytes) -> bytes:
    buf = bytearray(data)
    for passes in (1, PASSES):
        for p in range(passes):
            buf = bytearray((b * 3 + p + 1) & 0xFF for b in buf)
    return bytes(buf)


def build(
    tmp_path: Path, target: str, *defines: str, board: str | None = None, sanitize: bool = False
) -> Path:
    source = tmp_path / "prog.c"
    source.write_text(PROGRAM)
    flags = [f"-DPASSES={PASSES}", *(f"-D{d}" for d in defines)]
    return build_program(
        get_target(target),
        get_board(board) if board else None,
        [source],
        [],
        tmp_path / f"build-{target}",
        extra_cflags=flags,
        sanitize=sanitize,
    )


def test_host_run_with_sanitizers(tmp_path: Path) -> None:
    result = run_program(get_target("host"), build(tmp_path, "host", sanitize=True), DATA, len(DATA))
    assert result.output == expected(DATA)
    assert result.status == 0 and result.instructions is None and result.size is None


def test_host_sanitizer_failure_is_a_verify_error(tmp_path: Path) -> None:
    binary = build(tmp_path, "host", "OUT_OF_BOUNDS", sanitize=True)
    with pytest.raises(VerifyError, match="runtime error|AddressSanitizer"):
        run_program(get_target("host"), binary, DATA, len(DATA))


@pytest.mark.parametrize("target", ARM_TARGETS)
def test_emulated_run_counts_instructions(tmp_path: Path, target: str) -> None:
    binary = build(tmp_path, target)
    first = run_program(get_target(target), binary, DATA, len(DATA))
    second = run_program(get_target(target), binary, DATA, len(DATA))
    assert first.output == expected(DATA)
    assert _counts(first) == _counts(second)
    assert first.instructions is not None and first.cycles_estimate is not None
    assert set(first.per_region) == {-1, 0, 1}
    assert sum(first.per_region.values()) == first.instructions
    assert sum(first.mix.values()) == first.instructions and set(first.mix) == set(MIX_KEYS)
    assert first.instructions < first.cycles_estimate < 3 * first.instructions
    ratio = first.per_region[1] / first.per_region[0]
    assert PASSES * 0.9 < ratio < PASSES * 1.1
    assert first.per_region[0] > 5 * len(DATA) and first.per_region[-1] < first.per_region[0]
    assert first.size is not None and first.size.ram_bytes >= 1024 and first.size.flash_bytes > 0


def _counts(result: RunResult) -> tuple[object, ...]:
    return result.instructions, result.per_region, result.mix, result.cycles_estimate


@needs_arm
@pytest.mark.qemu
def test_arena_too_big_for_board_fails_at_link_time(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        build(tmp_path, "cortex-m4", "ARENA_BYTES=140000", board="stm32f411")
    message = str(info.value)
    assert message.startswith("board stm32f411: RAM overflows by ")
    assert "vmcu_arena 140,000 B" in message and "RAM 131,072 B" in message
    build(tmp_path, "cortex-m4", "ARENA_BYTES=120000", board="stm32f411")


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_fault_is_reported_not_hung(tmp_path: Path, target: str) -> None:
    binary = build(tmp_path, target, "BAD_ADDRESS=0x30000000u")
    result = run_program(get_target(target), binary, DATA, len(DATA), timeout_s=20, check=False)
    assert result.status == 2
    assert "HardFault: bus error at 0x30000000" in result.console
    with pytest.raises(VerifyError, match="exited with status 2"):
        run_program(get_target(target), binary, DATA, len(DATA), timeout_s=20)


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize(
    "define, message",
    [
        ("BAD_ADDRESS=0x20020004u", "access beyond the board's RAM at 0x20020004"),
        ("BAD_ADDRESS=0x00080000u", "access beyond the board's flash at 0x00080000"),
        ("BAD_ADDRESS=0x00001000u", "write to read-only flash at 0x00001000"),
        ("RECURSE=100000", "stack overflow"),
    ],
)
def test_mpu_enforces_the_board_at_run_time(tmp_path: Path, define: str, message: str) -> None:
    binary = build(tmp_path, "cortex-m4", define, board="stm32f411")
    result = run_program(get_target("cortex-m4"), binary, DATA, len(DATA), timeout_s=20, check=False)
    assert result.status == 2 and f"HardFault: {message}" in result.console


@needs_arm
@pytest.mark.qemu
def test_endless_loop_times_out(tmp_path: Path) -> None:
    binary = build(tmp_path, "cortex-m4", "HANG")
    with pytest.raises(VerifyError, match="did not finish within 1 s"):
        run_program(get_target("cortex-m4"), binary, DATA, len(DATA), timeout_s=1)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(BuildError, match="stm32f411"):
        get_board("stm32f999")
    with pytest.raises(BuildError, match="cortex-m7"):
        get_target("cortex-m99")

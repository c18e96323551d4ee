"""Build a generated C program for a target and run it: natively, or on QEMU with instruction counts.

Host builds are strict (-Werror) and can run under AddressSanitizer and UBSan; ARM builds link
against a per-board linker script, so a model that does not fit the board's SRAM or flash fails
here with a BuildError naming the overflow. Runs always have a timeout, and any failure (non-zero
exit, CPU fault, sanitizer report, wrong output size) becomes a VerifyError carrying the
program's console output.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template

from vmcu.errors import BuildError, VerifyError
from vmcu.run import toolchain
from vmcu.run.counts import InsnCounts, parse_counts
from vmcu.targets import Board, Target, get_board

DEFAULT_STACK_BYTES = 4096
INPUT_NAME = "vmcu_input.bin"
OUTPUT_NAME = "vmcu_output.bin"
_COMMON_CFLAGS = ("-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror")
_SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
_ARM_CFLAGS = ("-ffunction-sections", "-fdata-sections")
_ARM_LDFLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")
_FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.exidx", ".data")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")
_MAX_LOG_LINES = 40
_NOTABLE_BYTES = 1024


@dataclass(frozen=True)
class ProgramSize:
    """Memory a Cortex-M image needs, from arm-none-eabi-size; flash includes the .data image."""

    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    stack_bytes: int
    flash_bytes: int
    ram_bytes: int


@dataclass(frozen=True)
class RunResult:
    """What one run produced; instruction figures are None/empty for host runs."""

    output: bytes
    status: int
    console: str
    instructions: int | None
    per_region: dict[int, int]
    mix: dict[str, int]
    cycles_estimate: int | None
    per_region_cycles: dict[int, int]
    size: ProgramSize | None
    wall_seconds: float


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    if len(lines) > _MAX_LOG_LINES:
        lines = ["...", *lines[-_MAX_LOG_LINES:]]
    return "\n".join(lines)


def _run_tool(cmd: Sequence[str | Path], what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{what} failed:\n{_tail(done.stderr + done.stdout)}")
    return done


def _include_flags(include_dirs: Iterable[Path]) -> list[str]:
    return [f"-I{d}" for d in (toolchain.SUPPORT_DIR, *include_dirs)]


def build_program(
    target: Target,
    board: Board | None,
    sources: list[Path],
    include_dirs: list[Path],
    out_dir: Path,
    extra_cflags: Sequence[str] = (),
    sanitize: bool = False,
    stack_bytes: int = DEFAULT_STACK_BYTES,
) -> Path:
    """Compile and link `sources` plus the target's platform layer; return the binary's path.

    `board` (default: the target's own) sets the linker's memory limits on ARM and is ignored
    on the host; `sanitize` (host only) adds ASan and UBSan with aborting on the first error.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if target.is_host:
        binary = out_dir / "program"
        flags = [*_COMMON_CFLAGS, *(_SANITIZE_FLAGS if sanitize else ()), *extra_cflags]
        platform = toolchain.SUPPORT_DIR / "platform_host.c"
        cmd = [
            toolchain.host_cc(),
            *flags,
            *_include_flags(include_dirs),
            *sources,
            platform,
            "-o",
            binary,
            "-lm",
        ]
        _run_tool(cmd, f"host build of {', '.join(s.name for s in sources)}")
        return binary
    if sanitize:
        raise BuildError(f"sanitizers need the host target, not {target.name}")
    board = board or get_board(target.default_board or "qemu")
    gcc = toolchain.arm_gcc()
    flags = [*target.cflags, *_COMMON_CFLAGS, *_ARM_CFLAGS, *extra_cflags, *_include_flags(include_dirs)]
    all_sources = [
        *sources,
        toolchain.SUPPORT_DIR / "platform_semihost.c",
        toolchain.SUPPORT_DIR / "startup_cm.c",
    ]
    objects = [out_dir / f"{i:03d}_{src.stem}.o" for i, src in enumerate(all_sources)]

    def compile_one(pair: tuple[Path, Path]) -> None:
        src, obj = pair
        _run_tool([gcc, *flags, "-c", src, "-o", obj], f"compiling {src.name} for {target.name}")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(compile_one, zip(all_sources, objects, strict=True)))
    script = out_dir / "link.ld"
    script.write_text(render_link_script(board, stack_bytes))
    binary = out_dir / "program.elf"
    link = [
        gcc,
        *target.cflags,
        *_ARM_LDFLAGS,
        f"-Wl,-T,{script}",
        f"-Wl,-Map,{out_dir / 'program.map'}",
        *objects,
        "-lm",
        "-o",
        binary,
    ]
    done = subprocess.run([str(c) for c in link], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        overflows = _OVERFLOW.findall(done.stderr)
        if overflows:
            raise BuildError(_overflow_message(board, overflows, objects, stack_bytes))
        raise BuildError(f"linking for {target.name} failed:\n{_tail(done.stderr)}")
    return binary


def render_link_script(board: Board, stack_bytes: int = DEFAULT_STACK_BYTES) -> str:
    """The linker script for a board: its flash and RAM sizes are the limits the link enforces."""
    template = Template((toolchain.SUPPORT_DIR / "link_cm.ld.in").read_text())
    return template.substitute(
        flash_origin=hex(board.flash_origin),
        flash_size=board.flash_bytes,
        ram_origin=hex(board.ram_origin),
        ram_size=board.ram_bytes,
        stack_size=stack_bytes,
    )


def _overflow_message(board: Board, overflows: list[tuple[str, str]], objects: list[Path], stack: int) -> str:
    """Turn ld's "region `RAM' overflowed by N bytes" into a line naming the biggest users."""
    nm = subprocess.run(
        [str(toolchain.arm_binutil("nm")), "-S", "--size-sort", *map(str, objects)],
        capture_output=True,
        text=True,
        check=False,
    )
    symbols: dict[str, list[tuple[int, str]]] = {"RAM": [(stack, "stack")], "FLASH": []}
    for line in nm.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4:
            size, kind, name = int(fields[1], 16), fields[2].lower(), fields[3]
            if kind in "bd":
                symbols["RAM"].append((size, name))
            if kind in "trd":
                symbols["FLASH"].append((size, name))
    parts = []
    for region, excess in overflows:
        limit = board.ram_bytes if region == "RAM" else board.flash_bytes
        ranked = sorted(symbols.get(region, []), reverse=True)
        biggest = [s for s in ranked[:3] if s[0] >= _NOTABLE_BYTES] or ranked[:1]
        users = "".join(f"{name} {size:,} B, " for size, name in biggest)
        parts.append(f"{region} overflows by {int(excess):,} B ({users}{region} {limit:,} B)")
    return f"board {board.name}: " + "; ".join(parts)


def program_size(binary: Path) -> ProgramSize:
    """Section sizes of a Cortex-M image (flash = everything stored in flash, ram = .data + .bss)."""
    done = _run_tool([toolchain.arm_binutil("size"), "-A", binary], f"arm-none-eabi-size {binary.name}")
    sections: dict[str, int] = {}
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].startswith(".") and fields[1].isdigit():
            sections[fields[0]] = int(fields[1])
    data, bss = sections.get(".data", 0), sections.get(".bss", 0)
    return ProgramSize(
        text_bytes=sections.get(".isr_vector", 0) + sections.get(".text", 0),
        rodata_bytes=sections.get(".rodata", 0) + sections.get(".ARM.exidx", 0),
        data_bytes=data,
        bss_bytes=bss,
        stack_bytes=sections.get(".stack", 0),
        flash_bytes=sum(sections.get(name, 0) for name in _FLASH_SECTIONS),
        ram_bytes=data + bss,
    )


def _symbols(binary: Path) -> dict[str, tuple[int, int]]:
    """Address (Thumb bit cleared) and size of every symbol in an ELF file."""
    done = _run_tool([toolchain.arm_binutil("nm"), "-S", binary], f"arm-none-eabi-nm {binary.name}")
    found = {}
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) in (3, 4):
            size = int(fields[1], 16) if len(fields) == 4 else 0
            found[fields[-1]] = (int(fields[0], 16) & ~1, size)
    return found


def _qemu_command(target: Target, binary: Path, counts_file: Path) -> list[str]:
    plugin = toolchain.ensure_plugin()
    for path in (plugin, counts_file):
        if "," in str(path):
            raise VerifyError(f"QEMU cannot take a plugin path with a comma: {path}")
    plugin_arg = f"{plugin},out={counts_file}"
    symbols = _symbols(binary)
    if "vmcu_mark" in symbols and "__vmcu_mark_base" in symbols:
        (mark, mark_size), (base, _) = symbols["vmcu_mark"], symbols["__vmcu_mark_base"]
        plugin_arg += f",mark={mark:#x},mark_size={mark_size},mark_base={base:#x}"
    return [
        str(toolchain.qemu_arm()),
        "-M",
        str(target.qemu_machine),
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(binary.resolve()),
        "-plugin",
        plugin_arg,
    ]


def run_program(
    target: Target,
    binary: Path,
    input_bytes: bytes,
    output_size: int | None,
    timeout_s: float = 120.0,
    check: bool = True,
) -> RunResult:
    """Run a binary from build_program on its input blob and collect output and counts.

    With `check` (the default) a non-zero exit status or an output of other than `output_size`
    bytes raises VerifyError; without it the result carries the status for the caller to judge.
    """
    with tempfile.TemporaryDirectory(prefix="vmcu-run-") as tmp:
        work = Path(tmp)
        (work / INPUT_NAME).write_bytes(input_bytes)
        counts_file = work / "counts.txt"
        env = dict(os.environ)
        if target.is_host:
            cmd = [str(binary.resolve()), INPUT_NAME, OUTPUT_NAME]
            env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        else:
            cmd = _qemu_command(target, binary, counts_file)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                cmd,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise VerifyError(
                f"{target.name}: {binary.name} did not finish within {timeout_s:g} s and was killed "
                f"(endless loop, or a fault in a fault handler)\n{_tail(_decode(exc.stderr))}"
            ) from exc
        wall = time.perf_counter() - start
        console = _decode(done.stdout) + _decode(done.stderr)
        output_path = work / OUTPUT_NAME
        output = output_path.read_bytes() if output_path.exists() else b""
        counts = None if target.is_host else _read_counts(counts_file, done.returncode, console)
    if check:
        _check(target, binary, done.returncode, console, output, output_size)
    return RunResult(
        output=output,
        status=done.returncode,
        console=console,
        instructions=counts.total if counts else None,
        per_region=counts.per_region if counts else {},
        mix=counts.mix if counts else {},
        cycles_estimate=counts.cycles if counts else None,
        per_region_cycles=counts.per_region_cycles if counts else {},
        size=None if target.is_host else program_size(binary),
        wall_seconds=wall,
    )


def _decode(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _read_counts(counts_file: Path, status: int, console: str) -> InsnCounts:
    if not counts_file.exists():
        raise VerifyError(f"QEMU wrote no instruction counts (exit status {status}):\n{_tail(console)}")
    return parse_counts(counts_file.read_text())


def _check(target: Target, binary: Path, status: int, console: str, output: bytes, size: int | None) -> None:
    if status < 0:
        raise VerifyError(f"{target.name}: {binary.name} was killed by signal {-status}:\n{_tail(console)}")
    if status != 0:
        raise VerifyError(f"{target.name}: {binary.name} exited with status {status}:\n{_tail(console)}")
    if size is not None and len(output) != size:
        raise VerifyError(
            f"{target.name}: {binary.name} wrote {len(output):,} output bytes, expected {size:,}"
        )

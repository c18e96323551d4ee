"""The C kernel library shipped with vmcu: sources, include directory, call bindings and scratch sizes.

Two variants with identical prototypes: "ref" (portable C99) and "arm" (Cortex-M DSP extension for
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, the ref files for every other op). See README.md.
"""

from __future__ import annotations

from pathlib import Path

from vmcu.kernels.cparams import STRUCTS, Field, KernelBinding, c_definition, kernel_binding
from vmcu.kernels.scratch import VARIANTS, scratch_bytes

__all__ = ["STRUCTS", "VARIANTS", "Field", "KernelBinding", "c_definition", "include_dir", "kernel_binding",
           "kernel_dir", "kernel_sources", "scratch_bytes", "segment_sources"]


def kernel_dir() -> Path:
    """Root of the C library (holds include/, ref/ and arm/)."""
    return Path(__file__).resolve().parent


def include_dir() -> Path:
    """Directory to pass with -I: vmcu_kernels.h and vmcu_fixedpoint.h."""
    return kernel_dir() / "include"


def kernel_sources(variant: str = "ref") -> list[Path]:
    """The .c files of one variant: every ref/ file, except that an arm/ file of the same name replaces
    its ref/ counterpart in the "arm" variant (one file per op, each defining the same symbols)."""
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {VARIANTS}, not {variant!r}")
    files = {p.name: p for p in sorted((kernel_dir() / "ref").glob("*.c"))}
    if variant == "arm":
        files |= {p.name: p for p in sorted((kernel_dir() / "arm").glob("*.c"))}
    return [files[name] for name in sorted(files)]


def segment_sources(variant: str = "ref") -> list[Path]:
    """The .c files of a segment-plan program: every seg/ file, except that seg/<name>_arm.c replaces
    seg/<name>.c in the "arm" variant (same symbols), plus there the arm/ tensor kernels, which the DSP
    segment kernels run on the parts of their tensors that do not straddle the pool end."""
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {VARIANTS}, not {variant!r}")
    seg = sorted((kernel_dir() / "seg").glob("*.c"))
    files = {p.name: p for p in seg if not p.stem.endswith("_arm")}
    if variant == "arm":
        files |= {p.name.replace("_arm.c", ".c"): p for p in seg if p.stem.endswith("_arm")}
        files |= {p.name: p for p in sorted((kernel_dir() / "arm").glob("*.c"))}
    return [files[name] for name in sorted(files)]

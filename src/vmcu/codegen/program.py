"""What every generated program shares, whatever the memory strategy: the C file layout, the arena with
guard words, constants in flash, the public API and the test harness.

A strategy module (codegen/tensor.py, ...) turns its plan into a `Body`: file-scope definitions and the
statements of `<model>_run()`, plus the arena layout they assume. `emit_program` wraps a body into
`<model>.h`, `<model>.c` and `main.c`. The arena holds the plan's bytes followed by the kernel scratch
the body could not fit inside them (4-byte aligned), between guard words that `<model>_run()` checks
after the last op, so a stray write just outside the arena is caught at run time. The API follows TFLM's
shape: write inputs through `<model>_input(i)`, call `<model>_run()`, read `<model>_output(i)`;
`<model>_invoke()` wraps the three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from vmcu.errors import BuildError
from vmcu.ir.analysis import op_macs
from vmcu.ir.graph import Graph, Tensor

C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float", "uint8": "uint8_t"}
GUARD_WORDS = 4
GUARD_PATTERN = 0xA5C3E1F0
SCRATCH_ALIGN = 4


@dataclass(frozen=True)
class CProgram:
    """The generated sources and the memory figures they commit to."""

    name: str
    files: dict[str, str]
    variant: str
    strategy: str
    plan_bytes: int
    scratch_offset: int
    scratch_bytes: int
    arena_bytes: int
    input_bytes: tuple[int, ...]
    output_bytes: tuple[int, ...]
    order: tuple[int, ...]
    op_info: tuple[tuple[int, str, int], ...]  # (op index, type, MACs) per step, as vmcu_mark numbers them


@dataclass
class ConstTable:
    """Constant tensors the generated calls reference; each becomes one array in flash."""

    symbols: dict[int, str] = field(default_factory=dict)

    def ref(self, t: Tensor) -> str:
        self.symbols[t.index] = f"const_t{t.index}"
        return self.symbols[t.index]


@dataclass(frozen=True)
class Body:
    """A strategy's contribution: C at file scope, the statements of `<model>_run()` and the arena layout.

    `io_offsets` gives the arena offset of every graph input and output (each contiguous there);
    `op_graph` is the graph whose ops `order` indexes when it is not the model's (fused blocks).
    """

    strategy: str
    definitions: tuple[str, ...]
    statements: tuple[str, ...]
    constants: ConstTable
    plan_bytes: int
    scratch_bytes: int
    io_offsets: dict[int, int]
    order: tuple[int, ...]
    op_graph: Graph | None = None

    @property
    def scratch_offset(self) -> int:
        """Scratch follows the plan's bytes at the next 4-byte boundary (the DSP kernels load words)."""
        if not self.scratch_bytes:
            return self.plan_bytes
        return -(-self.plan_bytes // SCRATCH_ALIGN) * SCRATCH_ALIGN

    @property
    def arena_bytes(self) -> int:
        return self.scratch_offset + self.scratch_bytes


def c_identifier(name: str) -> str:
    """A model name as a C identifier prefix (file names of the shared models contain '__' and dashes)."""
    ident = re.sub(r"\W+", "_", name).strip("_").lower() or "model"
    return ident if not ident[0].isdigit() else f"m_{ident}"


def arena_ptr(t: Tensor, offset: int | str, *, const: bool) -> str:
    """The C expression for a tensor at an arena offset, cast to its element type."""
    ctype = C_TYPES[t.dtype]
    if ctype == "int8_t":
        return f"ARENA + {offset}"
    return f"({'const ' if const else ''}{ctype} *)(void *)(ARENA + {offset})"


def emit_program(graph: Graph, body: Body, *, variant: str, name: str | None = None) -> CProgram:
    """Wrap a strategy's body into `<name>.h`, `<name>.c` and the harness `main.c`."""
    name = c_identifier(name or graph.name)
    for t in list(graph.inputs) + list(graph.outputs):
        if t not in body.io_offsets:
            raise BuildError(f"{graph.name}: the plan does not place graph input/output tensor {t}")
    files = {f"{name}.h": _header(graph, name, body.arena_bytes), f"{name}.c": _source(graph, body, name),
             "main.c": _main(graph, name)}
    ops_of = body.op_graph or graph
    op_info = tuple((i, ops_of.ops[i].type, op_macs(ops_of, ops_of.ops[i])) for i in body.order)
    return CProgram(
        op_info=op_info, name=name, files=files, variant=variant, strategy=body.strategy, plan_bytes=body.plan_bytes,
        scratch_offset=body.scratch_offset, scratch_bytes=body.scratch_bytes, arena_bytes=body.arena_bytes,
        input_bytes=tuple(graph.tensors[i].nbytes for i in graph.inputs),
        output_bytes=tuple(graph.tensors[i].nbytes for i in graph.outputs), order=body.order)


def _const_array(t: Tensor, symbol: str) -> str:
    """A constant tensor as a C array in flash, aligned for word loads of the DSP kernels."""
    assert t.data is not None
    ctype = C_TYPES.get(t.dtype)
    if ctype is None:
        raise BuildError(f"constant tensor {t.index} '{t.name}' of {t.dtype} has no C type")
    flat = np.asarray(t.data).reshape(-1)
    if t.dtype == "float32":
        items = [repr(float(v)) + "f" for v in flat]
    elif t.dtype == "int32":
        items = ["(-2147483647 - 1)" if int(v) == -2**31 else str(int(v)) for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i:i + 24]) for i in range(0, len(items), 24)] or ["0"]
    body = ",\n    ".join(lines)
    return (f"/* tensor {t.index} '{t.name}' {list(t.shape)} */\n"
            f"static const {ctype} {symbol}[{max(len(items), 1)}] __attribute__((aligned(4))) = {{\n"
            f"    {body}\n}};\n")


def _io_ctype(graph: Graph, index: int) -> str:
    return C_TYPES[graph.tensors[index].dtype]


def _header(graph: Graph, name: str, arena_bytes: int) -> str:
    ins = ", ".join(f"const {_io_ctype(graph, i)} *input{k}" for k, i in enumerate(graph.inputs))
    outs = ", ".join(f"{_io_ctype(graph, i)} *output{k}" for k, i in enumerate(graph.outputs))
    guard = f"{name.upper()}_H"
    return f"""/* Generated by vmcu for model '{graph.name}'. */
#ifndef {guard}
#define {guard}

#include <stddef.h>
#include <stdint.h>

#define {name.upper()}_ARENA_BYTES {arena_bytes}u
#define {name.upper()}_NUM_INPUTS {len(graph.inputs)}
#define {name.upper()}_NUM_OUTPUTS {len(graph.outputs)}

/* Bytes of the static arena (activations + kernel scratch); guard words excluded. */
extern const uint32_t {name}_arena_bytes;

/* Where input i lives in the arena: write it there before {name}_run(). */
void *{name}_input(int i);
size_t {name}_input_bytes(int i);
/* Where output i lives after {name}_run(). */
const void *{name}_output(int i);
size_t {name}_output_bytes(int i);

/* Runs every op; returns 0, or -1 if a guard word around the arena was overwritten. */
int {name}_run(void);

/* Copies the inputs in, runs, copies the outputs out; returns what {name}_run() returns. */
int {name}_invoke({ins}, {outs});

#endif /* {guard} */
"""


def _source(graph: Graph, body: Body, name: str) -> str:
    arena_bytes = body.arena_bytes
    offsets = body.io_offsets
    words = -(-arena_bytes // 4)
    const_defs = "\n".join(_const_array(graph.tensors[i], sym) for i, sym in sorted(body.constants.symbols.items()))

    def table(indices: tuple[int, ...], what: str) -> str:
        return ", ".join(str(getattr(graph.tensors[i], what) if what == "nbytes" else offsets[i])
                         for i in indices)

    ins = ", ".join(f"const {_io_ctype(graph, i)} *input{k}" for k, i in enumerate(graph.inputs))
    outs = ", ".join(f"{_io_ctype(graph, i)} *output{k}" for k, i in enumerate(graph.outputs))
    copy_in = "".join(f"    memcpy({name}_input({k}), input{k}, {graph.tensors[i].nbytes});\n"
                      for k, i in enumerate(graph.inputs))
    copy_out = "".join(f"    memcpy(output{k}, {name}_output({k}), {graph.tensors[i].nbytes});\n"
                       for k, i in enumerate(graph.outputs))
    return f"""/* Generated by vmcu for model '{graph.name}': strategy {body.strategy},
 * plan {body.plan_bytes} B, arena {arena_bytes} B, {len(body.order)} ops. */
#include <string.h>

#include "vmcu_kernels.h"
#include "{name}.h"

/* Overridden by the platform's profiler; a no-op when the model is linked into other firmware. */
__attribute__((weak)) void vmcu_mark(int region) {{ (void)region; }}

/* The whole SRAM working set: guard words, {arena_bytes} bytes of arena, guard words. */
static uint32_t {name}_arena[{GUARD_WORDS} + {words} + {GUARD_WORDS}] __attribute__((aligned(16)));
#define ARENA ((int8_t *)(void *)&{name}_arena[{GUARD_WORDS}])
const uint32_t {name}_arena_bytes = {arena_bytes}u;

static const uint32_t input_offsets[] = {{{table(graph.inputs, "offset")}}};
static const uint32_t input_sizes[] = {{{table(graph.inputs, "nbytes")}}};
static const uint32_t output_offsets[] = {{{table(graph.outputs, "offset")}}};
static const uint32_t output_sizes[] = {{{table(graph.outputs, "nbytes")}}};

{const_defs}
{"".join(body.definitions)}
void *{name}_input(int i) {{ return ARENA + input_offsets[i]; }}
size_t {name}_input_bytes(int i) {{ return input_sizes[i]; }}
const void *{name}_output(int i) {{ return ARENA + output_offsets[i]; }}
size_t {name}_output_bytes(int i) {{ return output_sizes[i]; }}

static void set_guards(void) {{
    for (int k = 0; k < {GUARD_WORDS}; k++) {{
        {name}_arena[k] = 0x{GUARD_PATTERN:08X}u;
        {name}_arena[{GUARD_WORDS} + {words} + k] = 0x{GUARD_PATTERN:08X}u;
    }}
}}

static int guards_intact(void) {{
    for (int k = 0; k < {GUARD_WORDS}; k++) {{
        if ({name}_arena[k] != 0x{GUARD_PATTERN:08X}u ||
            {name}_arena[{GUARD_WORDS} + {words} + k] != 0x{GUARD_PATTERN:08X}u) {{
            return 0;
        }}
    }}
    return 1;
}}

int {name}_run(void) {{
    set_guards();
{"".join(body.statements)}    vmcu_mark(-1);
    return guards_intact() ? 0 : -1;
}}

int {name}_invoke({ins}, {outs}) {{
{copy_in}    int status = {name}_run();
{copy_out}    return status;
}}
"""


def _main(graph: Graph, name: str) -> str:
    """The harness: the input blob is every input's bytes back to back; single inputs go straight
    into the arena, several are read into one buffer first (the blob has a single read call)."""
    if len(graph.inputs) == 1:
        size = f"{name}_input_bytes(0)"
        read = f"""    if (vmcu_read_input({name}_input(0), {size}) != {size}) {{
        vmcu_fail("input: wrong number of bytes");
    }}
"""
        buf = ""
    else:
        total = sum(graph.tensors[i].nbytes for i in graph.inputs)
        buf = f"static uint8_t blob[{total}];\n"
        split, at = "", 0
        for k, i in enumerate(graph.inputs):
            split += f"    memcpy({name}_input({k}), blob + {at}, {name}_input_bytes({k}));\n"
            at += graph.tensors[i].nbytes
        read = f"""    if (vmcu_read_input(blob, sizeof blob) != sizeof blob) {{
        vmcu_fail("input: wrong number of bytes");
    }}
{split}"""
    writes = "".join(f"    vmcu_write_output({name}_output({k}), {name}_output_bytes({k}));\n"
                     for k in range(len(graph.outputs)))
    return f"""/* Test harness generated by vmcu: input blob -> {name}_run() -> output blob. */
#include <string.h>

#include "vmcu_platform.h"
#include "{name}.h"

{buf}int vmcu_main(void) {{
{read}    if ({name}_run() != 0) {{
        vmcu_fail("a guard word around the arena was overwritten");
    }}
{writes}    return 0;
}}
"""
